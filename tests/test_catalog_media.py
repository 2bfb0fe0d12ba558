"""Catalogue media (SPEC K1, W1): a product's image or video uploaded by the brand's office, kept in
the media store without its metadata, served to everyone (cached, typed, in byte ranges) and shown
on the consumer pages by the products that name it."""

from __future__ import annotations

import asyncio
import secrets
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from app.config import CATALOG_MEDIA_MAX_BYTES_CAP, SettingsError, load_settings
from app.media import imagemeta
from app.media.storage import store_from_settings
from tests.h5_support import new_product
from tests.helpers import (
    answered_before_its_body,
    assert_error,
    key_of,
    new_org,
    onboarded_brand,
)
from tests.images import jpeg, jpeg_exif, jpeg_sof, png, png_chunk, png_ihdr, webp
from tests.race_support import held_in_turn
from tests.test_media_s3 import _s3_settings, _serve, s3rver  # noqa: F401  (the fixture)


def mp4(size: int, seed: bytes = b"") -> bytes:
    """An MP4 of ``size`` bytes (its ftyp box, then anything), ``seed`` making it its own."""
    head = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + seed
    return head + b"\x00" * (size - len(head))


MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(range(256)) * 40
WEBM = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm" + bytes(range(256)) * 8
GPS = b"GPS 31.2304N 121.4737E taken by Zhang San"
CATALOG_FIELDS = (
    "id",
    "kind",
    "content_type",
    "size_bytes",
    "sha256",
    "url",
    "absolute_url",
    "created_at",
)


async def upload(client: Any, headers: dict[str, str], data: Any, kind: str = "") -> Any:
    return await client.post(
        "/media/catalog",
        params={"kind": kind} if kind else None,
        headers={**headers, "Content-Type": "application/octet-stream"},
        content=data,
    )


def _read(path: Path) -> bytes | None:
    """The file's bytes, None when there is none (sync: a test's look at the disk)."""
    return path.read_bytes() if path.exists() else None


def _files_holding(folder: Path, data: bytes) -> list[Path]:
    """The files below ``folder`` holding ``data``."""
    return [p for p in folder.rglob("*") if p.is_file() and p.read_bytes() == data]


async def login_brand(conn: Any, username: str) -> int:
    """The brand of a user (the root of its organisation's path)."""
    row = await (
        await conn.execute(
            "SELECT o.path FROM users u JOIN orgs o ON o.id = u.org_id WHERE u.username = %s",
            (username,),
        )
    ).fetchone()
    await conn.commit()
    return int(row["path"].split("/")[1])


async def _key(conn: Any, media_id: str) -> str:
    row = await (
        await conn.execute("SELECT storage_key FROM catalog_media WHERE id = %s", (media_id,))
    ).fetchone()
    await conn.commit()
    return row["storage_key"]  # type: ignore[no-any-return]


async def test_images_lose_their_metadata_and_are_served_to_anyone(
    client: Any, login: Any, settings: Any, conn: Any
) -> None:
    admin = await login("admin")
    cases = (
        (png(1, GPS), png(1), "image/png"),
        (jpeg(GPS, orientation=6), None, "image/jpeg"),
        (webp(GPS), webp(), "image/webp"),
    )
    for sent, kept, media_type in cases:
        made = await upload(client, admin, sent, kind="image")
        assert made.status_code == 201, made.text
        medium = made.json()
        assert (medium["kind"], medium["content_type"]) == ("image", media_type)
        assert medium["url"] == f"/media/catalog/{medium['id']}"
        assert medium["absolute_url"] == settings.public_url + medium["url"]
        served = await client.get(medium["url"])  # no credentials: the public's view
        assert served.status_code == 200, served.text
        assert GPS not in served.content and b"Zhang" not in served.content
        if kept is not None:
            assert served.content == kept
        assert len(served.content) == medium["size_bytes"]
        assert served.headers["content-type"] == media_type
        assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert served.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in served.headers["content-security-policy"]
        assert served.headers["etag"] == f'"{medium["sha256"]}"'
        again = await client.get(medium["url"], headers={"If-None-Match": served.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        stored = Path(settings.media_path, await _key(conn, medium["id"]))
        assert _read(stored) == served.content
        assert stored.relative_to(settings.media_path).parts[0] == "catalog"
    # the JPEG keeps its tables and scan byte for byte, and its orientation alone (a portrait
    # stays upright)
    stripped = imagemeta.strip(jpeg(GPS, orientation=6), "image/jpeg")
    assert stripped.endswith(jpeg()[-212:]) and b"\xff\xfe" not in stripped[:40]
    assert imagemeta._exif_orientation(stripped[stripped.index(b"Exif") :]) == 6
    assert imagemeta.strip(jpeg(GPS, orientation=1), "image/jpeg") == jpeg()


async def test_a_video_is_kept_as_it_is_and_served_in_byte_ranges(client: Any, login: Any) -> None:
    admin = await login("admin")
    for data, media_type in ((MP4, "video/mp4"), (WEBM, "video/webm")):
        made = await upload(client, admin, data, kind="video")
        assert made.status_code == 201, made.text
        url = made.json()["url"]
        assert made.json()["kind"] == "video" and made.json()["size_bytes"] == len(data)
        whole = await client.get(url)
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["content-type"] == media_type
        assert whole.headers["accept-ranges"] == "bytes"
        part = await client.get(url, headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == data[10:20]
        assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
        assert part.headers["content-type"] == media_type
        tail = await client.get(url, headers={"Range": "bytes=-5"})
        assert tail.status_code == 206 and tail.content == data[-5:]
        rest = await client.get(url, headers={"Range": f"bytes={len(data) - 3}-"})
        assert rest.content == data[-3:]
        assert_error(await client.get(url, headers={"Range": f"bytes={len(data)}-"}), 416)
        # another version named in If-Range: the whole file
        other = await client.get(url, headers={"Range": "bytes=0-1", "If-Range": '"other"'})
        assert other.status_code == 200 and other.content == data
        head = await client.head(url, headers={"Range": "bytes=0-9"})
        assert head.status_code == 206 and head.headers["content-length"] == "10"
        assert head.content == b""


async def test_what_is_no_product_image_or_video_is_refused_with_stable_codes(
    client: Any, login: Any, conn: Any
) -> None:
    admin = await login("admin")
    before = await (await conn.execute("SELECT count(*) AS n FROM catalog_media")).fetchone()
    await conn.commit()
    for data in (
        b"GIF89a" + b"\x00" * 32,
        b"<html><script>alert(1)</script></html>",
        b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ",  # QuickTime, not MP4
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",  # a HEIF image
        b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska",  # MKV, not WebM
        b"\xff\xd8",
    ):
        assert_error(await upload(client, admin, data), 415, "unsupported_catalog_media")
    # a video sent as the image (and the other way round): refused, its kind said
    wrong = assert_error(await upload(client, admin, MP4, kind="image"), 415)
    assert wrong["code"] == "unsupported_catalog_media" and wrong["details"] == {"kind": "video"}
    assert wrong["message"] == "this is a video, not an image", wrong
    image = assert_error(await upload(client, admin, png(), kind="video"), 415)
    assert image["code"] == "unsupported_catalog_media" and image["details"] == {"kind": "image"}
    assert image["message"] == "this is an image, not a video", image  # was "a image"
    assert_error(await upload(client, admin, b""), 400, "empty_body")
    assert_error(await upload(client, admin, png(), kind="audio"), 400)
    # blocks that do not add up: refused, never published half read
    for damaged in (
        png()[:-8],  # no IEND
        imagemeta.PNG_SIGNATURE + png_chunk(b"IDAT", b"x") + png_chunk(b"IEND", b""),  # no IHDR
        b"\xff\xd8\xff\xe0\xff\xff" + b"\x00" * 10,  # a segment past the end
        b"\xff\xd8\xff\xe0\x00\x04\x00\x00\xff\xd9",  # no scan
        b"RIFF\xff\x00\x00\x00WEBPVP8L",  # a RIFF size past the end
        b"RIFF\x10\x00\x00\x00WEBPEXIF\x00\x00\x00\x00",  # no image chunk
    ):
        assert_error(await upload(client, admin, damaged), 400, "damaged_image")
    # no credentials: 401 before the body; staff without catalog.write: 403
    anonymous = await client.post("/media/catalog", content=png())
    assert_error(anonymous, 401, "unauthorized")
    assert_error(await upload(client, await login("fieldrep"), png()), 403, "permission_denied")
    assert_error(await client.get("/media/catalog/00000000-0000-4000-8000-000000000000"), 404)
    assert (await client.get("/media/catalog/not-an-id")).status_code in (400, 404)
    after = await (await conn.execute("SELECT count(*) AS n FROM catalog_media")).fetchone()
    await conn.commit()
    assert after["n"] == before["n"]


async def test_oversized_uploads_are_413_with_or_without_a_length(
    client: Any, login: Any, app: Any
) -> None:
    settings = app.state.settings
    app.state.settings = msgspec.structs.replace(
        settings, catalog_image_max_bytes=4096, catalog_video_max_bytes=16384
    )
    try:
        admin = await login("admin")
        big_image = png(2, b"x" * 5000)
        error = assert_error(await upload(client, admin, big_image), 413, "catalog_media_too_large")
        assert error["details"] == {"max_bytes": 4096}
        # asked for an image: refused by its declared length, before the body
        early = assert_error(await upload(client, admin, mp4(5000), kind="image"), 413)
        assert early["details"] == {"max_bytes": 4096}
        exact = await upload(client, admin, mp4(16384, b"limit"))
        assert exact.status_code == 201, exact.text
        over = await upload(client, admin, mp4(16385, b"limit"))
        assert_error(over, 413, "catalog_media_too_large")

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: cut at the limit
            for _ in range(10):
                yield mp4(4000)

        cut = assert_error(await upload(client, admin, chunked()), 413)
        assert cut["details"] == {"max_bytes": 16384}
    finally:
        app.state.settings = settings
    with pytest.raises(SettingsError, match="CATALOG_VIDEO_MAX_BYTES"):
        load_settings({"TRACECODE_CATALOG_VIDEO_MAX_BYTES": str(CATALOG_MEDIA_MAX_BYTES_CAP + 1)})


async def test_the_same_bytes_twice_or_at_once_are_one_medium(
    client: Any, login: Any, conn: Any, settings: Any
) -> None:
    admin = await login("admin")
    data = png(3, b"retried")
    first = (await upload(client, admin, data)).json()
    again = await upload(client, admin, data)  # a retry: the same medium, no second object
    assert again.status_code == 201 and again.json()["id"] == first["id"]
    racing = png(4)
    folder = Path(settings.media_path, "catalog", str(await login_brand(conn, "admin")))
    before = set(_files_holding(folder, racing))  # var/ outlives a test session's database
    answers = await asyncio.gather(*(upload(client, admin, racing) for _ in range(4)))
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["id"] for a in answers}) == 1
    rows = await (
        await conn.execute(
            "SELECT storage_key FROM catalog_media WHERE sha256 = %s",
            (bytes.fromhex(answers[0].json()["sha256"]),),
        )
    ).fetchall()
    await conn.commit()
    assert len(rows) == 1
    kept = Path(settings.media_path, rows[0]["storage_key"])
    assert set(_files_holding(folder, racing)) - before == {kept}  # the losers' objects are gone
    # another brand's same bytes are its own medium
    _, other = await onboarded_brand(client, login)
    theirs = await upload(client, other, data)
    assert theirs.status_code == 201 and theirs.json()["id"] != first["id"]


async def test_a_medium_uploaded_through_an_api_key_names_its_maker(
    client: Any, login: Any, conn: Any
) -> None:
    """A probe: a brand's PIM (an API key its admin made, ``catalog.write``) uploaded a product
    image and the medium's ``created_by`` was null — an image on the public pages uploaded by
    nobody. It names the person behind the key now (``Principal.person``)."""
    _, admin = await onboarded_brand(client, login)
    key = await key_of(client, admin, ["catalog.write"])
    made = await upload(client, key, png(5, b"pim"), kind="image")
    assert made.status_code == 201, made.text
    row = await (
        await conn.execute(
            "SELECT created_by FROM catalog_media WHERE id = %s", (made.json()["id"],)
        )
    ).fetchone()
    await conn.commit()
    maker = (await client.get("/auth/me", headers=admin)).json()["user_id"]
    assert row["created_by"] == maker, row


async def test_products_name_their_brand_s_media_and_the_pages_show_them(
    client: Any, login: Any
) -> None:
    admin = await login("admin")
    image = (await upload(client, admin, png(5))).json()
    video = (await upload(client, admin, mp4(3000, b"page"))).json()
    product = await new_product(
        client,
        login,
        name="Serum 精华",
        image_url=image["url"],
        video_url=video["url"],
        display_order=-1_000_000,  # first on the brand's list page (the least order there is)
    )
    assert (product["image_url"], product["video_url"]) == (image["url"], video["url"])
    page = await client.get(f"/p/{product['gtin']}", headers={"Accept-Language": "en"})
    assert page.status_code == 200
    assert f'<img src="{image["url"]}" alt="Serum 精华">' in page.text
    assert f'<video src="{video["url"]}" controls' in page.text
    assert "media-src 'self'" in page.headers["content-security-policy"]
    listing = await client.get("/brand/products", params={"brand": product["org_id"]})
    assert listing.status_code == 200 and f'src="{image["url"]}"' in listing.text
    assert f'href="{video["url"]}"' in listing.text
    # a video in the image field, an unknown id, another brand's: 400, the field named
    for field, url in (
        ("image_url", video["url"]),
        ("video_url", image["url"]),
        ("image_url", "/media/catalog/00000000-0000-4000-8000-000000000000"),
    ):
        bad = await client.patch(f"/products/{product['id']}", headers=admin, json={field: url})
        error = assert_error(bad, 400, "unknown_catalog_media")
        assert error["details"] == {"field": field}
    _, other = await onboarded_brand(client, login)
    theirs = (await upload(client, other, png(6))).json()
    stolen = await client.patch(
        f"/products/{product['id']}", headers=admin, json={"image_url": theirs["url"]}
    )
    assert_error(stolen, 400, "unknown_catalog_media")
    made = await client.post(
        "/products",
        headers=other,
        json={"name": "x", "product_no": "CM-1", "image_url": image["url"]},
    )
    assert_error(made, 400, "unknown_catalog_media")
    # other paths of this server are no media URL
    for url in ("/media/photos/" + image["id"], "/media/catalog/" + image["id"] + "/x"):
        assert_error(
            await client.patch(
                f"/products/{product['id']}", headers=admin, json={"image_url": url}
            ),
            400,
            "validation_failed",
        )


async def test_a_medium_goes_only_when_no_product_shows_it_and_only_by_its_brand(
    client: Any, login: Any, conn: Any, settings: Any
) -> None:
    admin = await login("admin")
    image = (await upload(client, admin, png(7))).json()
    stored = Path(settings.media_path, await _key(conn, image["id"]))
    product = await new_product(client, login, image_url=image["url"])
    _, other = await onboarded_brand(client, login)
    assert_error(await client.delete(image["url"], headers=other), 404, "not_found")
    assert_error(await client.delete(image["url"]), 401)
    assert_error(await client.delete(image["url"], headers=await login("fieldrep")), 403)
    used = assert_error(await client.delete(image["url"], headers=admin), 409, "in_use")
    assert used["details"] == {"product_id": product["id"]}
    # another brand cannot overwrite it either: its same bytes are a medium of its own
    assert (await upload(client, other, png(7))).json()["id"] != image["id"]
    assert (await client.get(image["url"])).content == _read(stored)
    await client.patch(f"/products/{product['id']}", headers=admin, json={"image_url": None})
    gone = await client.delete(image["url"], headers=admin)
    assert gone.status_code == 204, gone.text
    assert _read(stored) is None
    assert_error(await client.get(image["url"]), 404)
    assert_error(await client.delete(image["url"], headers=admin), 404)


async def test_a_medium_s_upload_and_deletion_are_audited_under_its_brand(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a deletion was audited with no ``before`` (which file went could not be told)
    and under the caller's organisation. The medium is its brand's: its upload and deletion
    are filed under the brand, the deletion with the medium as it was (type, size, hash, its
    path — never its bytes), whoever of the brand's staff did it (an ERP key of the brand's)."""
    admin = await login("admin")
    erp = await key_of(client, admin, ["catalog.read", "catalog.write"], demo["BRAND-LUMI"])
    medium = (await upload(client, erp, png(secrets.randbelow(1 << 24)))).json()
    assert (await client.delete(medium["url"], headers=erp)).status_code == 204
    got = await client.get(
        "/audit", headers=admin, params={"entity": "catalog_media", "entity_id": medium["id"]}
    )
    assert got.status_code == 200, got.text
    gone, made = got.json()["items"]
    assert (made["action"], made["org_id"], made["before"]) == ("upload", demo["BRAND-LUMI"], None)
    assert (gone["action"], gone["org_id"], gone["after"]) == ("delete", demo["BRAND-LUMI"], None)
    assert gone["before"] == made["after"] == medium


async def test_a_deletion_and_a_product_naming_the_medium_meet_one_after_the_other(
    client: Any, login: Any
) -> None:
    """Of a deletion and a product edit naming the medium at once, exactly one wins: the medium
    is deleted and the edit refused, or the edit is saved and the deletion refused."""
    admin = await login("admin")
    product = await new_product(client, login)
    for n in range(4):
        image = (await upload(client, admin, png(100 + n))).json()
        removed, named = await asyncio.gather(
            client.delete(image["url"], headers=admin),
            client.patch(
                f"/products/{product['id']}", headers=admin, json={"image_url": image["url"]}
            ),
        )
        assert sorted((removed.status_code, named.status_code)) in ([200, 409], [204, 400])
        shown = (await client.get(f"/products/{product['id']}", headers=admin)).json()
        exists = (await client.get(image["url"])).status_code == 200
        assert (shown["image_url"] == image["url"]) == exists == (named.status_code == 200)
        await client.patch(f"/products/{product['id']}", headers=admin, json={"image_url": None})


async def test_a_medium_named_by_its_absolute_url_is_named_by_its_path(
    client: Any, login: Any
) -> None:
    """A probe: the upload answers ``absolute_url`` too, and a product's ``image_url`` takes any
    http(s) URL: a product made with it was not seen as showing the medium — listed as unused,
    and deleted (204) from under the published product — and another brand's product took it
    past the brand check. Such a URL (whatever its host) is kept as the medium's path now, and
    checked as the path is; a URL naming no medium here stays as it is. The ERP import too."""
    _, office = await onboarded_brand(client, login)
    image = (await upload(client, office, png(secrets.randbelow(1 << 24)))).json()
    video = (await upload(client, office, mp4(3000, secrets.token_bytes(8)))).json()
    made = await client.post(
        "/products",
        headers=office,
        json={
            "name": "Absolute",
            "product_no": "ABS-1",
            "image_url": image["absolute_url"],
            "video_url": "https://cdn.example.com" + video["url"] + "?v=2",  # a proxy in front
            "published": True,
        },
    )
    assert made.status_code == 201, made.text
    product = made.json()
    assert (product["image_url"], product["video_url"]) == (image["url"], video["url"])
    assert _ids(await _listed(client, office, unused="true")) == []
    used = assert_error(await client.delete(image["url"], headers=office), 409, "in_use")
    assert used["details"] == {"product_id": product["id"]}
    # the form saved again with the absolute URL: no change
    again = await client.patch(
        f"/products/{product['id']}", headers=office, json={"image_url": image["absolute_url"]}
    )
    assert again.status_code == 200, again.text
    assert again.json()["updated_at"] == product["updated_at"]
    # a video in the image field, another brand's medium: refused as by the path
    wrong = await client.patch(
        f"/products/{product['id']}", headers=office, json={"image_url": video["absolute_url"]}
    )
    assert assert_error(wrong, 400, "unknown_catalog_media")["details"] == {"field": "image_url"}
    _, other = await onboarded_brand(client, login)
    stolen = await client.post(
        "/products",
        headers=other,
        json={"name": "x", "product_no": "ABS-1", "image_url": image["absolute_url"]},
    )
    assert assert_error(stolen, 400, "unknown_catalog_media")["details"] == {"field": "image_url"}
    # another site's URL of the same shape names no medium here: kept as it is
    elsewhere = "https://cdn.example.com/media/catalog/00000000-0000-4000-8000-000000000000"
    kept = await client.patch(
        f"/products/{product['id']}", headers=office, json={"image_url": elsewhere}
    )
    assert kept.status_code == 200 and kept.json()["image_url"] == elsewhere, kept.text
    # the ERP's rows: the path kept, the same row again unchanged
    row = {"erp_code": "ABS-ERP", "product_no": "ABS-2", "name": "Abs"}
    row["image_url"] = image["absolute_url"]
    for result in ("created", "unchanged"):
        imported = await client.post("/products/import", headers=office, json={"items": [row]})
        assert imported.status_code == 200, imported.text
        assert imported.json()["results"][0]["result"] == result, imported.json()
    erp = await client.get(f"/products/{imported.json()['results'][0]['id']}", headers=office)
    assert erp.json()["image_url"] == image["url"]


async def test_a_medium_named_by_a_variant_of_its_url_is_named_by_its_path(
    client: Any, login: Any
) -> None:
    """A probe: a product's ``image_url`` set to a medium's ``absolute_url`` with a trailing
    ``/`` (or ``/.``, ``%2F``) was kept as another site's URL, while the server and a browser
    resolve it to the medium: it was not seen as in use (deleted, 204, from under the published
    product), and another brand's product took the medium past the brand check. Any URL whose
    path — percent-decoded, dot segments resolved, trailing slashes dropped — is a medium's
    path is kept as that path and checked so; a variant naming a medium's id that is none of
    this server's is 400 ``unknown_catalog_media`` (an exact URL of another site's medium is
    still kept, and so is any other file under a ``/media/catalog/``: a review, a shop's
    images as Magento keeps them were refused). The ERP import too."""
    _, office = await onboarded_brand(client, login)
    _, other = await onboarded_brand(client, login)
    image = (await upload(client, office, png(secrets.randbelow(1 << 24)))).json()
    absolute = image["absolute_url"]
    host, path = absolute.removesuffix(image["url"]), image["url"]
    for n, url in enumerate(
        (
            absolute + "/",
            absolute + "/.",
            absolute + "%2F",
            absolute + "//?v=2#top",
            host + "/media/./catalog/x/../" + image["id"].upper(),
            host + "/media/catalog%2F" + image["id"],
        )
    ):
        made = await client.post(
            "/products",
            headers=office,
            json={"name": "Variant", "product_no": f"VAR-{n}", "image_url": url, "published": True},
        )
        assert made.status_code == 201, (url, made.text)
        assert made.json()["image_url"] == path, url
        assert_error(await client.delete(path, headers=office), 409, "in_use")
        stolen = await client.post(
            "/products", headers=other, json={"name": "x", "product_no": "VAR", "image_url": url}
        )
        error = assert_error(stolen, 400, "unknown_catalog_media")
        assert error["details"] == {"field": "image_url"}, url
    elsewhere = "https://cdn.example.com/media/catalog/00000000-0000-4000-8000-000000000000"
    refused = await client.post(
        "/products",
        headers=office,
        json={"name": "x", "product_no": "VAR-X", "image_url": elsewhere + "/"},
    )
    assert assert_error(refused, 400, "unknown_catalog_media")["details"] == {"field": "image_url"}
    shop = "https://shop.example.com/media/catalog/product/c/a/cat.jpg"
    for n, url in enumerate((elsewhere, shop, "https://cdn.example.com/media/catalog/a.png/")):
        kept = await client.post(
            "/products",
            headers=office,
            json={"name": "x", "product_no": f"VAR-K{n}", "image_url": url},
        )
        assert (kept.status_code, kept.json()["image_url"]) == (201, url), kept.text
    row = {"erp_code": "VAR-ERP", "product_no": "VAR-E", "name": "Var", "image_url": absolute + "/"}
    imported = await client.post("/products/import", headers=office, json={"items": [row]})
    assert imported.status_code == 200, imported.text
    result = imported.json()["results"][0]
    assert result["result"] == "created", imported.json()
    erp = await client.get(f"/products/{result['id']}", headers=office)
    assert erp.json()["image_url"] == path


async def test_catalogue_media_are_written_by_the_brand_s_own_staff(
    client: Any, login: Any
) -> None:
    """A probe: a factory's staff holding ``catalog.write`` (a role of the brand's own making,
    or an ERP key of the factory) deleted the brand's media (204) — from under the products of
    the brand it cannot write — and uploaded against the brand's quota. A medium is the
    brand's, and the catalogue is written only where the owner is in the writer's subtree:
    uploads and deletions are the brand's own staff's (403 ``brand_staff_only``); below the
    brand, media are still listed, and named by the factory's own products."""
    brand, office = await onboarded_brand(client, login)
    factory = await new_org(client, office, "factory", brand["id"])
    below = await key_of(client, office, ["catalog.read", "catalog.write"], factory["id"])
    image = (await upload(client, office, png(secrets.randbelow(1 << 24)))).json()
    assert_error(await client.delete(image["url"], headers=below), 403, "brand_staff_only")
    refused = await upload(client, below, png(secrets.randbelow(1 << 24)))
    assert_error(refused, 403, "brand_staff_only")
    assert (await _usage(client, office))["count"] == 1
    assert _ids(await _listed(client, below)) == [image["id"]]
    made = await client.post(
        "/products",
        headers=below,
        json={"name": "Factory's", "product_no": "F-1", "image_url": image["absolute_url"]},
    )
    assert made.status_code == 201, made.text
    assert (made.json()["org_id"], made.json()["image_url"]) == (factory["id"], image["url"])
    await client.delete(f"/products/{made.json()['id']}", headers=below)
    assert (await client.delete(image["url"], headers=office)).status_code == 204


async def test_an_upload_without_the_permission_is_refused_before_its_body(
    client: Any, login: Any
) -> None:
    """A probe: a signed-in store clerk (no ``catalog.write``) streamed a body to ``POST
    /media/catalog`` (up to 50 MB) and held it back: the body was waited for, and buffered
    whole, before the 403 (``app.deps.caller_first`` refused only the anonymous early). The
    route's permission is checked before the body now."""
    clerk = await login("store_clerk")
    answer = await answered_before_its_body(client, "/media/catalog", clerk)
    assert_error(answer, 403, "permission_denied")


async def test_a_factory_s_upload_is_refused_before_its_body(client: Any, login: Any) -> None:
    """A probe: a factory's API key holding ``catalog.write`` (its products' permission, never
    the brand's media) streamed a body to ``POST /media/catalog`` and held it back: the body was
    waited for, and buffered (up to 50 MB), before the 403 ``brand_staff_only``. The brand-staff
    rule (``catalog.writer``) is the route's ``before_body``, checked before the body now."""
    brand, office = await onboarded_brand(client, login)
    factory = await new_org(client, office, "factory", brand["id"])
    below = await key_of(client, office, ["catalog.read", "catalog.write"], factory["id"])
    answer = await answered_before_its_body(client, "/media/catalog", below)
    assert_error(answer, 403, "brand_staff_only")


async def test_a_kind_given_twice_is_its_last_for_the_limit_as_for_the_check(
    client: Any, login: Any, app: Any
) -> None:
    """A review: with ``?kind=image&kind=video`` the body's limit read the first (the image's)
    and the handler the last (a video): a video within its own limit was 413. Both read the
    last, as Litestar does for a repeated single-valued parameter."""
    settings = app.state.settings
    app.state.settings = msgspec.structs.replace(
        settings, catalog_image_max_bytes=4096, catalog_video_max_bytes=16384
    )
    try:
        admin = await login("admin")
        video = mp4(8000, secrets.token_bytes(8))
        made = await client.post(
            "/media/catalog?kind=image&kind=video",
            headers={**admin, "Content-Type": "application/octet-stream"},
            content=video,
        )
        assert made.status_code == 201, made.text
        assert made.json()["kind"] == "video"
        # the other way round: the image's limit, and a video is not the image asked for
        early = await client.post(
            "/media/catalog?kind=video&kind=image",
            headers={**admin, "Content-Type": "application/octet-stream"},
            content=video,
        )
        assert assert_error(early, 413, "catalog_media_too_large")["details"] == {"max_bytes": 4096}
        wrong = await client.post(
            "/media/catalog?kind=video&kind=image",
            headers={**admin, "Content-Type": "application/octet-stream"},
            content=mp4(2000, secrets.token_bytes(8)),
        )
        assert_error(wrong, 415, "unsupported_catalog_media")
    finally:
        app.state.settings = settings
    assert (await client.delete(made.json()["url"], headers=admin)).status_code == 204


# -- S3 -------------------------------------------------------------------------------------------


@pytest.fixture
async def s3_app_client(settings: Any, demo: Any, s3rver: tuple[str, Path]) -> AsyncIterator[Any]:  # noqa: F811
    from app.main import create_app

    app: Any = create_app(_s3_settings(settings, s3rver[0]))
    async for _ in _serve(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", timeout=60
        ) as client:
            yield client


async def test_media_go_to_the_s3_bucket_and_come_back_in_ranges(
    s3_app_client: Any,
    login: Any,
    settings: Any,
    s3rver: tuple[str, Path],  # noqa: F811
    conn: Any,
) -> None:
    admin = await login("admin")
    made = await upload(s3_app_client, admin, MP4 + b"s3")
    assert made.status_code == 201, made.text
    medium = made.json()
    key = await _key(conn, medium["id"])
    assert key.startswith("catalog/")
    store = store_from_settings(_s3_settings(settings, s3rver[0]))
    assert await store.get(key) == MP4 + b"s3"
    assert _read(Path(settings.media_path, key)) is None  # not in the local directory
    whole = await s3_app_client.get(medium["url"])
    assert whole.status_code == 200 and whole.content == MP4 + b"s3"
    assert whole.headers["content-type"] == "video/mp4"
    part = await s3_app_client.get(medium["url"], headers={"Range": "bytes=4-11"})
    assert part.status_code == 206 and part.content == b"ftypisom"
    assert (await s3_app_client.delete(medium["url"], headers=admin)).status_code == 204
    with pytest.raises(Exception, match="not found"):
        await store.get(key)


# -- review ---------------------------------------------------------------------------------------


def _segment(marker: int, body: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(body) + 2) + body


def progressive(between: bytes = b"") -> bytes:
    """A progressive JPEG's structure: two scans (their data with a stuffed 0xFF and an RST
    marker), ``between`` them (with a table) before the second, EOI."""
    app0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof2 = _segment(0xC2, b"\x08\x00\x01\x00\x01\x01\x01\x11\x00")
    dht = _segment(0xC4, b"\x00" + bytes(16))
    scan1 = _segment(0xDA, b"\x01\x01\x00\x00\x00\x00") + b"\x12\xff\x00\x34\xff\xd0\x56"
    scan2 = _segment(0xDA, b"\x01\x01\x00\x01\x3f\x00") + b"\x78\xff\x00\x9a\xff\xd1\xbc"
    return b"\xff\xd8" + app0 + sof2 + dht + scan1 + between + dht + scan2 + b"\xff\xd9"


async def test_pictures_appended_after_a_jpeg_s_image_are_cut(
    client: Any, login: Any, conn: Any, settings: Any
) -> None:
    """A review: everything from a JPEG's first scan on was copied as it was, so a second
    image appended after the first one's EOI kept its own EXIF — phones' MPF previews, HDR gain
    maps, a Motion Photo's MP4, each with the GPS position — and was served to anyone, cached for
    a year. The scans' data is now walked to their markers, and nothing after EOI is kept."""
    admin = await login("admin")
    primary = jpeg()
    location_mp4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    location_mp4 += b"\x00\x00\x00\x20\xa9xyz+31.2304+121.4737/"
    for trailing in (jpeg(GPS, orientation=1), jpeg(GPS, orientation=6), location_mp4):
        assert imagemeta.strip(primary + trailing, "image/jpeg") == primary
    made = await upload(client, admin, primary + jpeg(GPS), kind="image")
    assert made.status_code == 201, made.text
    served = await client.get(made.json()["url"])
    assert served.content == primary and GPS not in served.content  # the image byte for byte
    stored = Path(settings.media_path, await _key(conn, made.json()["id"]))
    assert _read(stored) == primary
    # a progressive JPEG: the metadata between its scans goes, its scans and tables stay
    between = jpeg_exif(6, GPS) + _segment(0xFE, GPS)
    stripped = imagemeta.strip(progressive(between), "image/jpeg")
    assert GPS not in stripped
    assert stripped == progressive(imagemeta._exif_block(6))
    assert imagemeta.strip(progressive() + jpeg(GPS), "image/jpeg") == progressive()
    # a JPEG whose image data has no end: damaged
    for damaged in (primary[:-2], progressive()[:-2], primary[:-2] + b"\xff"):
        assert_error(await upload(client, admin, damaged), 400, "damaged_image")


def _old_entropy_end(data: bytes, at: int) -> int:
    """The scans' end as it was walked before (0xFF by 0xFF, in Python): the reference."""
    while True:
        at = data.find(b"\xff", at)
        if at < 0 or at + 1 >= len(data):
            raise imagemeta.Damaged("no end")
        if data[at + 1] != 0x00 and not 0xD0 <= data[at + 1] <= 0xD7:
            return at
        at += 2


def test_a_scan_ends_where_it_ended_when_walked_byte_by_byte() -> None:
    """The scans' data is searched with a regular expression now (a probe: 5 MB of stuffed
    ``FF00`` pairs took 0.8 s walked in Python): for every byte string of the bytes that matter
    (0xFF, 0x00, RST, a marker, data) up to six long, and random longer ones, its end is the one
    the old walk found, or both refuse it."""
    import itertools
    import random

    alphabet = (0xFF, 0x00, 0xD0, 0xD7, 0xD9, 0xC4, 0x12)
    cases = [bytes(c) for n in range(7) for c in itertools.product(alphabet, repeat=n)]
    rng = random.Random(5)
    cases += [bytes(rng.choice(alphabet) for _ in range(rng.randrange(50))) for _ in range(3000)]
    for data in cases:
        for at in range(min(len(data), 3) + 1):
            try:
                expected: Any = _old_entropy_end(data, at)
            except imagemeta.Damaged:
                expected = imagemeta.Damaged
            try:
                got: Any = imagemeta._entropy_end(data, at)
            except imagemeta.Damaged:
                got = imagemeta.Damaged
            assert got == expected, (data.hex(), at)


async def test_a_jpeg_of_too_many_segments_is_damaged_and_uploads_are_read_off_the_loop(
    client: Any, login: Any, monkeypatch: Any
) -> None:
    """A probe: a 5 MB "JPEG" of two-byte segments (or of empty ones, or of fill bytes) was
    walked in Python on the request's own event loop for over a second, every other request of
    the process waiting. More than ``MAX_JPEG_SEGMENTS`` segments is ``damaged_image`` now, fill
    bytes are skipped by a search, and the upload is sniffed, stripped and hashed in a thread."""
    import threading

    admin = await login("admin")
    limit = imagemeta.MAX_JPEG_SEGMENTS
    for filler in (b"\xff\x01", b"\xff\xe0\x00\x02", b"\xff\xfe\x00\x02"):
        crafted = b"\xff\xd8" + filler * (limit + 1) + jpeg()[2:]
        with pytest.raises(imagemeta.Damaged, match="segments"):
            imagemeta.strip(crafted, "image/jpeg")
        assert_error(await upload(client, admin, crafted), 400, "damaged_image")
    fill = b"\xff\xd8" + b"\xff" * 100_000 + jpeg()[3:]  # fill bytes before APP0's marker
    assert imagemeta.strip(fill, "image/jpeg") == jpeg()
    loop_thread = threading.get_ident()
    threads: list[int] = []
    real = imagemeta.strip

    def watched(data: bytes, content_type: str) -> bytes:
        threads.append(threading.get_ident())
        return real(data, content_type)

    monkeypatch.setattr(imagemeta, "strip", watched)
    made = await upload(client, admin, jpeg(secrets.token_bytes(8)), kind="image")
    assert made.status_code == 201, made.text
    assert threads and loop_thread not in threads


async def test_a_range_of_an_s3_medium_is_asked_of_s3_as_a_range(
    s3_app_client: Any, login: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: a public GET of a medium in S3 read the whole object into memory and then
    answered the range asked for — ``Range: bytes=0-0`` of a 200 MB video read 200 MB, for
    anyone, as often as asked. The range is now asked of S3 (a signed ``Range`` header) and the
    bytes streamed as they come."""
    from app.media.s3 import S3Store

    asked: list[tuple[str, str | None, int]] = []
    opened = S3Store._open

    def recording(self: S3Store, method: str, key: str, *args: Any, **kwargs: Any) -> Any:
        status, response = opened(self, method, key, *args, **kwargs)
        asked.append((method, (kwargs.get("extra") or {}).get("range"), status))
        return status, response

    monkeypatch.setattr(S3Store, "_open", recording)
    admin = await login("admin")
    data = MP4 + b"ranged"
    made = await upload(s3_app_client, admin, data)
    assert made.status_code == 201, made.text
    url = made.json()["url"]
    asked.clear()
    one = await s3_app_client.get(url, headers={"Range": "bytes=0-0"})
    assert one.status_code == 206 and one.content == data[:1]
    part = await s3_app_client.get(url, headers={"Range": "bytes=100-163"})
    assert part.status_code == 206 and part.content == data[100:164]
    whole = await s3_app_client.get(url)
    assert whole.status_code == 200 and whole.content == data
    # S3 answered each with the bytes asked for alone (206), never the whole object unasked
    last = len(data) - 1
    assert asked == [
        ("GET", "bytes=0-0", 206),
        ("GET", "bytes=100-163", 206),
        ("GET", f"bytes=0-{last}", 206),
    ]
    assert (await s3_app_client.delete(url, headers=admin)).status_code == 204
    assert_error(await s3_app_client.get(url, headers={"Range": "bytes=0-0"}), 404)


async def test_a_gift_picture_is_an_http_url_not_a_catalogue_medium(
    client: Any, login: Any
) -> None:
    """A review: a gift's ``picture_url`` took the catalogue's URL type, and with it a
    ``/media/catalog/{id}`` path of any brand and either kind, unchecked — and a medium a gift
    named could be deleted (only products were looked at), breaking the gift's picture. The
    console's gift form takes http(s) URLs only: so does the API."""
    admin = await login("admin")
    image = (await upload(client, admin, png(8))).json()
    body = {"name": "Gift", "points_cost": 30, "kind": "offline", "stock": 1}
    made = await client.post("/gifts", headers=admin, json={**body, "picture_url": image["url"]})
    assert_error(made, 400, "validation_failed")
    gift = await client.post(
        "/gifts", headers=admin, json={**body, "picture_url": "https://cdn.example.com/g.png"}
    )
    assert gift.status_code == 201, gift.text
    patched = await client.patch(
        f"/gifts/{gift.json()['id']}", headers=admin, json={"picture_url": image["url"]}
    )
    assert_error(patched, 400, "validation_failed")
    assert (await client.delete(image["url"], headers=admin)).status_code == 204
    # the gift goes: in the brand's catalogue, its picture (no such host here) would be loaded
    # by the H5 browser tests' redemption pages, whose console it fills with a load error
    assert (await client.delete(f"/gifts/{gift.json()['id']}", headers=admin)).status_code == 204


async def test_if_none_match_star_is_not_modified(client: Any, login: Any) -> None:
    """A review: ``If-None-Match: *`` (any version) answered 200 with the bytes, not 304."""
    admin = await login("admin")
    url = (await upload(client, admin, png(9))).json()["url"]
    for header in ("*", '"other", *', 'W/"other"'):
        answer = await client.get(url, headers={"If-None-Match": header})
        assert answer.status_code == (200 if "*" not in header else 304), header
    etag = (await client.get(url)).headers["etag"]
    assert (await client.get(url, headers={"If-None-Match": f'"x", W/{etag}'})).status_code == 304


# -- the brand's media: its list, its usage, its quota ---------------------------------------------


async def _usage(client: Any, headers: dict[str, str]) -> dict[str, int]:
    answer = await client.get("/media/catalog/usage", headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def _listed(client: Any, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    answer = await client.get("/media/catalog", headers=headers, params=params)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["total"] == len(body["items"]), body  # one page holds the test's own
    return body["items"]  # type: ignore[no-any-return]


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


async def test_a_brand_lists_its_media_with_the_products_naming_them(
    client: Any, login: Any
) -> None:
    """The office finds what it uploaded: a medium the product dialog uploaded and no product
    kept (``unused=true``) is listed, with its id to delete it; a used one names its products."""
    from tests.test_paged_lists import _pages

    _, office = await onboarded_brand(client, login)
    shown = (await upload(client, office, png(200))).json()
    orphan = (await upload(client, office, png(201))).json()
    video = (await upload(client, office, mp4(3000, b"listed"))).json()
    products = []
    for n in range(7):  # more than the list names: the first five, and the count
        made = await client.post(
            "/products",
            headers=office,
            json={
                "name": f"Cream {n}",
                "product_no": f"ML-{n}",
                "image_url": shown["url"],
                "video_url": video["url"] if n == 0 else None,
            },
        )
        assert made.status_code == 201, made.text
        products.append(made.json())

    items = await _listed(client, office)
    assert _ids(items) == [video["id"], orphan["id"], shown["id"]]  # newest first
    first = items[2]
    assert {k: first[k] for k in CATALOG_FIELDS} == {k: shown[k] for k in CATALOG_FIELDS}
    assert first["product_count"] == 7
    assert first["products"] == [{"id": p["id"], "name": p["name"]} for p in products[:5]]
    assert (items[0]["product_count"], items[0]["products"]) == (
        1,
        [{"id": products[0]["id"], "name": "Cream 0"}],
    )
    assert (items[1]["product_count"], items[1]["products"]) == (0, [])
    assert _ids(await _listed(client, office, unused="true")) == [orphan["id"]]
    assert _ids(await _listed(client, office, unused="false")) == [video["id"], shown["id"]]
    assert _ids(await _listed(client, office, kind="video")) == [video["id"]]
    assert _ids(await _listed(client, office, kind="image", unused="true")) == [orphan["id"]]
    assert _ids(await _pages(client, "/media/catalog", office)) == _ids(items)
    assert_error(await client.get("/media/catalog", headers=office, params={"kind": "gif"}), 400)
    # a product saved without it: unused now, and deleted from the list's id
    for product in products[1:]:
        cleared = await client.patch(
            f"/products/{product['id']}", headers=office, json={"image_url": None}
        )
        assert cleared.status_code == 200, cleared.text
    assert [i["product_count"] for i in await _listed(client, office)] == [1, 0, 1]
    gone = await client.delete(f"/media/catalog/{orphan['id']}", headers=office)
    assert gone.status_code == 204, gone.text
    assert _ids(await _listed(client, office, unused="true")) == []


async def test_each_brand_lists_its_own_media_and_catalogue_readers_of_its_tree_read_them(
    client: Any, login: Any
) -> None:
    """Another brand's office sees its own media only (the same bytes are its own medium); the
    house rule of catalogue reads holds (``catalog.read``, anywhere in the brand's tree, as
    ``GET /products``): an agent's administrator and a store's clerk read the brand's list and
    usage, and delete nothing (``catalog.write``)."""
    _, office = await onboarded_brand(client, login)
    _, other = await onboarded_brand(client, login)
    mine = (await upload(client, office, png(210))).json()
    assert await _listed(client, other) == []
    assert await _usage(client, other) == {
        "used_bytes": 0,
        "quota_bytes": 2 * 1024**3,
        "count": 0,
    }
    theirs = (await upload(client, other, png(210))).json()
    assert _ids(await _listed(client, other)) == [theirs["id"]] != [mine["id"]]
    assert _ids(await _listed(client, office)) == [mine["id"]]

    admin = await login("admin")
    demo_medium = (await upload(client, admin, png(secrets.randbelow(1 << 24)))).json()
    for reader in ("agent_admin", "store_clerk"):
        headers = await login(reader)
        page = await client.get("/media/catalog", headers=headers, params={"per_page": 200})
        assert page.status_code == 200, page.text
        seen = _ids(page.json()["items"])
        assert demo_medium["id"] in seen and mine["id"] not in seen
        assert (await _usage(client, headers))["count"] >= 1
        refused = await client.delete(f"/media/catalog/{demo_medium['id']}", headers=headers)
        assert_error(refused, 403)
    printer = await login("printer")  # no catalog.read
    assert_error(await client.get("/media/catalog", headers=printer), 403)
    assert_error(await client.get("/media/catalog/usage", headers=printer), 403)
    assert_error(await client.get("/media/catalog"), 401)
    assert_error(await client.get("/media/catalog/usage"), 401)
    # /media/catalog/usage is no medium's id; a medium's id is still its file
    assert (await client.get(demo_medium["url"])).status_code == 200
    assert (await client.delete(demo_medium["url"], headers=admin)).status_code == 204


@pytest.fixture
def quota(app: Any) -> Any:
    """``set(n)``: the brands' quota is ``n`` bytes for the test (the app's settings restored)."""
    settings = app.state.settings

    class Quota:
        def set(self, n: int) -> None:
            app.state.settings = msgspec.structs.replace(settings, catalog_brand_quota_bytes=n)

    yield Quota()
    app.state.settings = settings


async def test_an_upload_past_the_brand_s_quota_is_refused_and_the_same_bytes_count_once(
    client: Any, login: Any, quota: Any, conn: Any, settings: Any
) -> None:
    brand, office = await onboarded_brand(client, login)
    quota.set(10_000)
    folder = Path(settings.media_path, "catalog", str(brand["id"]))
    first = (await upload(client, office, mp4(4000, b"q1"))).json()
    second = (await upload(client, office, mp4(4000, b"q2"))).json()
    assert await _usage(client, office) == {"used_bytes": 8000, "quota_bytes": 10_000, "count": 2}
    over = await upload(client, office, mp4(4000, b"q3"))
    error = assert_error(over, 409, "catalog_quota_exceeded")
    assert error["details"] == {"used_bytes": 8000, "quota_bytes": 10_000, "size_bytes": 4000}
    assert len(_files_holding(folder, mp4(4000, b"q3"))) == 0  # refused before the store
    # the same bytes again: the same medium, nothing more counted, even at the quota's edge
    again = await upload(client, office, mp4(4000, b"q1"))
    assert again.status_code == 201 and again.json()["id"] == first["id"]
    exact = await upload(client, office, mp4(2000, b"q4"))  # up to the quota itself
    assert exact.status_code == 201, exact.text
    assert await _usage(client, office) == {"used_bytes": 10_000, "quota_bytes": 10_000, "count": 3}
    assert_error(await upload(client, office, png(220)), 409, "catalog_quota_exceeded")
    again = await upload(client, office, mp4(2000, b"q4"))
    assert again.status_code == 201 and again.json()["id"] == exact.json()["id"]
    # a deletion frees its bytes
    assert (await client.delete(second["url"], headers=office)).status_code == 204
    assert (await _usage(client, office))["used_bytes"] == 6000
    assert (await upload(client, office, mp4(4000, b"q3"))).status_code == 201
    # the quota is the brand's: another brand's uploads are counted apart
    _, other = await onboarded_brand(client, login)
    assert (await upload(client, other, mp4(4000, b"q5"))).status_code == 201
    assert (await _usage(client, other))["used_bytes"] == 4000
    assert (await _usage(client, office))["used_bytes"] == 10_000


async def test_uploads_racing_at_the_quota_s_edge_pass_only_as_far_as_they_fit(
    client: Any, login: Any, quota: Any, settings: Any
) -> None:
    """Uploads sent at once each read the brand's total before any row was written: without
    the brand's lock (``Lock.CATALOG_QUOTA``) they all passed. Exactly those that fit pass;
    the others' objects are deleted again; copies of the same bytes count once."""
    brand, office = await onboarded_brand(client, login)
    quota.set(10_000)
    folder = Path(settings.media_path, "catalog", str(brand["id"]))
    files = [mp4(3000, secrets.token_bytes(8)) for _ in range(6)]
    answers = await asyncio.gather(*(upload(client, office, data) for data in files))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201, 201, 201, 409, 409, 409], [a.text for a in answers]
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["error"]["code"] == "catalog_quota_exceeded"
    assert await _usage(client, office) == {"used_bytes": 9000, "quota_bytes": 10_000, "count": 3}
    kept = [data for data, a in zip(files, answers, strict=True) if a.status_code == 201]
    refused = [data for data, a in zip(files, answers, strict=True) if a.status_code == 409]
    assert all(len(_files_holding(folder, data)) == 1 for data in kept)
    assert all(_files_holding(folder, data) == [] for data in refused)
    # four copies of one file that fits, at once: one medium, counted once
    last = mp4(1000, secrets.token_bytes(8))  # its own: var/ keeps earlier sessions' files
    copies = await asyncio.gather(*(upload(client, office, last) for _ in range(4)))
    assert {a.status_code for a in copies} == {201}, [a.text for a in copies]
    assert len({a.json()["id"] for a in copies}) == 1
    assert await _usage(client, office) == {"used_bytes": 10_000, "quota_bytes": 10_000, "count": 4}
    assert len(_files_holding(folder, last)) == 1


def test_the_brand_quota_is_a_setting() -> None:
    assert load_settings({}).catalog_brand_quota_bytes == 2 * 1024**3
    env = {"TRACECODE_CATALOG_BRAND_QUOTA_BYTES": str(50 * 1024**3)}
    assert load_settings(env).catalog_brand_quota_bytes == 50 * 1024**3
    with pytest.raises(SettingsError, match="CATALOG_BRAND_QUOTA_BYTES"):
        load_settings({"TRACECODE_CATALOG_BRAND_QUOTA_BYTES": "100"})


# -- a probe: images with no image data, or claiming gigapixels ------------------------------------


def _riff(*chunks: bytes) -> bytes:
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _webp_chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("<I", len(body)) + body + b"\x00" * (len(body) & 1)


def _vp8x(width: int, height: int) -> bytes:
    sizes = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return _webp_chunk(b"VP8X", b"\x00" * 4 + sizes)


def _vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | (height - 1) << 14
    return _webp_chunk(b"VP8L", b"\x2f" + struct.pack("<I", bits))


def _vp8(width: int, height: int) -> bytes:
    return _webp_chunk(b"VP8 ", b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", width, height))


def _png_of(width: int, height: int) -> bytes:
    idat = png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
    return imagemeta.PNG_SIGNATURE + png_ihdr(width, height) + idat + png_chunk(b"IEND", b"")


async def test_an_image_with_no_image_data_or_no_pixels_is_damaged(client: Any, login: Any) -> None:
    """A probe: README names "no image data" among the ``damaged_image`` refusals, and a JPEG
    without a scan and a WebP without an image chunk were; a 45-byte PNG of its IHDR and IEND
    (no IDAT) was kept and published (201). So are refused an image of 0 pixels a side, a JPEG
    whose scan comes before any frame header, and headers that cannot be read."""
    _, admin = await onboarded_brand(client, login)
    sign, iend = imagemeta.PNG_SIGNATURE, png_chunk(b"IEND", b"")
    scan = jpeg()[jpeg().index(b"\xff\xda") :]
    for damaged in (
        sign + png_ihdr(1, 1) + iend,  # no IDAT
        sign + png_ihdr(1, 1) + png_chunk(b"tEXt", b"a\x00b") + iend,
        _png_of(0, 0),
        _png_of(1, 0),
        sign + png_chunk(b"IHDR", b"\x00" * 8) + png()[33:],  # an IHDR cut short
        b"\xff\xd8" + scan,  # a scan and no frame header
        jpeg(size=(0, 1)),
        jpeg(size=(640, 0)),  # a height given later (DNL): browsers draw none
        b"\xff\xd8" + _segment(0xC0, b"\x08\x00\x01\x00") + scan,  # a frame header cut short
        _riff(_webp_chunk(b"VP8L", b"\x00\x00\x00\x00\x00")),  # no VP8L signature
        _riff(_webp_chunk(b"VP8 ", b"\x10\x02\x00" + b"\x00" * 7)),  # no key frame start code
        _riff(_vp8(0, 0)),
        _riff(_webp_chunk(b"ANIM", b"\x00" * 6)),  # an animation with no canvas (no VP8X)
    ):
        assert_error(await upload(client, admin, damaged), 400, "damaged_image")
    with pytest.raises(imagemeta.Damaged, match="no image data"):
        imagemeta.strip(sign + png_ihdr(1, 1) + iend, "image/png")


async def test_an_image_claiming_more_pixels_than_a_phone_may_draw_is_refused(
    client: Any, login: Any
) -> None:
    """A probe: a 69-byte PNG whose IHDR claims 100,000 x 100,000 pixels (~30 GB decoded) was
    kept and served to every consumer's phone, cached for a year. An image claiming more than
    ``MAX_SIDE`` pixels a side or ``MAX_PIXELS`` in all is 400 ``image_too_large`` now, for every
    kind: a PNG's IHDR, a JPEG's frame header (baseline or progressive), a WebP's VP8X canvas,
    VP8 or VP8L header. Every phone's photo and panorama still fits."""
    _, admin = await onboarded_brand(client, login)
    gigapixels = await upload(client, admin, _png_of(100_000, 100_000))
    refused = assert_error(gigapixels, 400, "image_too_large")
    assert refused["details"] == {
        "width": 100_000,
        "height": 100_000,
        "max_side": 16_384,
        "max_pixels": 64_000_000,
    }  # README's limits
    side, pixels = imagemeta.MAX_SIDE, imagemeta.MAX_PIXELS
    progressive_huge = progressive().replace(jpeg_sof(0xC2, 1, 1), jpeg_sof(0xC2, 30_000, 30_000))
    assert progressive_huge != progressive()
    for bomb in (
        _png_of(side + 1, 1),
        _png_of(1, side + 1),
        _png_of(8_001, 8_000),  # 64,008,000 pixels
        jpeg(size=(65_535, 65_535)),
        jpeg(size=(side + 1, 100)),
        progressive_huge,
        _riff(_vp8x(100_000, 100_000), _vp8l(1, 1)),
        _riff(_vp8(16_383, 16_383)),
        _riff(_vp8l(16_384, 16_384)),
    ):
        refused = assert_error(await upload(client, admin, bomb), 400, "image_too_large")
        assert refused["details"]["max_side"] == side
        assert refused["details"]["max_pixels"] == pixels
    # a 50 megapixel phone photo (Pixel: 8160 x 6144), a 48 megapixel one, a phone's panorama and
    # the largest a side may be: kept
    for fits in (
        jpeg(size=(8_160, 6_144)),
        jpeg(size=(6_048, 8_064)),
        _png_of(side, 3_900),
        _riff(_vp8x(side, 1), _vp8l(side, 1)),
        _riff(_vp8(4_000, 3_000)),
    ):
        made = await upload(client, admin, fits, kind="image")
        assert made.status_code == 201, made.text


async def _tell_story(client: Any, headers: dict[str, str], html: str) -> httpx.Response:
    """``PUT /brand-story`` with ``html``, made from the story's current version."""
    current = await client.get("/brand-story", headers=headers)
    assert current.status_code == 200, current.text
    body = {"html": html, "version": current.json()["version"]}
    return await client.put("/brand-story", headers=headers, json=body)  # type: ignore[no-any-return]


async def test_a_medium_the_brand_story_shows_is_in_use(client: Any, login: Any) -> None:
    """A probe: a medium the brand's own story shows (by its ``absolute_url``: the story keeps
    absolute URLs only) was deleted (204) — ``DELETE /media/catalog/{id}`` looked at products
    only — and the phone's story page showed a broken picture; the list offered it as unused.
    Now it is 409 ``in_use`` (``details.brand_story``) while the story shows it, as a picture or
    a link, and listed as in use (``in_story``, not under ``unused=true``); a story saved without
    it lets it go."""
    _, office = await onboarded_brand(client, login)
    image = (await upload(client, office, png(secrets.randbelow(1 << 24)))).json()
    video = (await upload(client, office, mp4(3000, secrets.token_bytes(8)))).json()
    orphan = (await upload(client, office, png(secrets.randbelow(1 << 24)))).json()
    html = (
        f'<p><img src="{image["absolute_url"]}" alt="us"></p>'
        f'<p><a href="{video["absolute_url"]}?autoplay=1">our film</a></p>'
    )
    saved = await _tell_story(client, office, html)
    assert saved.status_code == 200, saved.text
    for medium in (image, video):
        used = assert_error(await client.delete(medium["url"], headers=office), 409, "in_use")
        assert used["details"] == {"brand_story": True}
    items = await _listed(client, office)
    assert [(i["id"], i["in_story"], i["product_count"]) for i in items] == [
        (orphan["id"], False, 0),
        (video["id"], True, 0),
        (image["id"], True, 0),
    ]
    assert _ids(await _listed(client, office, unused="true")) == [orphan["id"]]
    assert _ids(await _listed(client, office, unused="false")) == [video["id"], image["id"]]
    # another brand's story naming none of them (nor may it: unknown_catalog_media) leaves them
    _, other = await onboarded_brand(client, login)
    assert (await _tell_story(client, other, "<p>theirs</p>")).status_code == 200
    assert (await _tell_story(client, office, "<p>no pictures</p>")).status_code == 200
    assert [i["in_story"] for i in await _listed(client, office)] == [False, False, False]
    for medium in (image, video, orphan):
        gone = await client.delete(medium["url"], headers=office)
        assert gone.status_code == 204, gone.text


async def test_a_deletion_and_a_story_naming_the_medium_meet_one_after_the_other(
    client: Any, login: Any, app: Any
) -> None:
    """Of a deletion and a story save naming the medium at once, exactly one wins, as with a
    product (the save holds the medium's row ``FOR KEY SHARE``, the deletion ``FOR UPDATE``):
    the medium is deleted and the save refused (400 ``unknown_catalog_media``: gone meanwhile,
    or a URL of this server's host naming no medium), or the story saved and the deletion
    refused (409). Each order forced (a third transaction holds the medium's row while the
    first, then the second request waits for it), then sent at once."""
    _, office = await onboarded_brand(client, login)

    async def both(image: dict[str, Any], story_first: bool | None) -> tuple[Any, Any]:
        current = (await client.get("/brand-story", headers=office)).json()["version"]
        body = {"html": f'<img src="{image["absolute_url"]}" alt="x">', "version": current}

        def named() -> Any:
            return client.put("/brand-story", headers=office, json=body)

        def removed() -> Any:
            return client.delete(image["url"], headers=office)

        if story_first is None:
            at_once = await asyncio.gather(removed(), named())
            return at_once[0], at_once[1]
        lock = "SELECT 1 FROM catalog_media WHERE id = %s FOR UPDATE"
        one, two = (named, removed) if story_first else (removed, named)
        answers = await held_in_turn(app, lock, (image["id"],), one, two)
        return (answers[1], answers[0]) if story_first else (answers[0], answers[1])

    for n, story_first in enumerate((True, False, None, None, None)):
        image = (await upload(client, office, png(300 + n))).json()
        removed, named = await both(image, story_first)
        codes = (removed.status_code, named.status_code)
        assert codes in ((409, 200), (204, 400)), (story_first, removed.text, named.text)
        if story_first is not None:
            assert codes == ((409, 200) if story_first else (204, 400)), story_first
        shown = (await client.get("/brand-story", headers=office)).json()["html"]
        exists = (await client.get(image["url"])).status_code == 200
        assert (image["id"] in shown) == exists == (named.status_code == 200)
        assert (await _tell_story(client, office, "<p>none</p>")).status_code == 200


async def test_a_medium_is_served_and_deleted_by_its_id_s_hyphenated_form_only(
    client: Any, login: Any
) -> None:
    """A review: ``GET /media/catalog/{id}`` took its id as ``uuid.UUID`` does — 32 bare hex
    digits, ``urn:uuid:``, braces, hyphens anywhere — and served the medium, while the checks of
    products and the brand story know the hyphenated form only: brand B's story or product named
    brand A's medium so as another site's file (and B's phone page showed it), and the brand's
    own story showed its medium so with the medium deletable. Now the download and the deletion
    take the hyphenated form only (either case, as the checks read it): 404 for another, as for
    an unknown id — a story or product keeping such a URL shows nothing of this server."""
    _, a = await onboarded_brand(client, login)
    _, b = await onboarded_brand(client, login)
    theirs = (await upload(client, a, png(secrets.randbelow(1 << 24)))).json()
    bare = theirs["id"].replace("-", "")
    host = theirs["absolute_url"].removesuffix(theirs["url"])
    others = (
        bare,
        bare.upper(),
        f"urn:uuid:{theirs['id']}",
        f"{{{theirs['id']}}}",
        f"{bare[:4]}-{bare[4:]}",
        f"{theirs['id']} ",
    )
    for other in others:
        for method in ("GET", "HEAD"):
            served = await client.request(method, f"/media/catalog/{other}")
            assert served.status_code == 404, (method, other, served.status_code)
        assert_error(await client.delete(f"/media/catalog/{other}", headers=a), 404, "not_found")
    for same in (theirs["id"], theirs["id"].upper()):
        assert (await client.get(f"/media/catalog/{same}")).status_code == 200, same
    # B's story and product naming A's medium by its bare hex digits name nothing served here
    saved = await _tell_story(client, b, f'<img src="{host}/media/catalog/{bare}" alt="x">')
    assert saved.status_code == 200, saved.text
    assert theirs["id"] not in saved.json()["html"]
    body = {"name": "x", "product_no": f"PZ-{secrets.token_hex(3)}"}
    made = await client.post(
        "/products", headers=b, json={**body, "image_url": f"{host}/media/catalog/{bare}"}
    )
    assert made.status_code == 201, made.text
    assert made.json()["image_url"] == f"{host}/media/catalog/{bare}"
    # A's own story so: its medium is not shown, so not in use
    mine = await _tell_story(client, a, f'<img src="{host}/media/catalog/{bare}" alt="x">')
    assert mine.status_code == 200, mine.text
    gone = await client.delete(f"/media/catalog/{theirs['id'].upper()}", headers=a)
    assert gone.status_code == 204, gone.text
