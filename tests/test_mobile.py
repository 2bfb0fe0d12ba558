"""The staff mobile app's serving (app/web/mobile.py): /m answers the PWA built into
console/dist/m (``make console`` builds it with the console), its SPA routes, its service worker
and manifest, with the console's CSP and a Permissions-Policy for the camera and the position.

The app must be built (``make console``; ``make test`` does it first).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from app.web.console import dist_dir
from app.web.mobile import CSP, mobile_dir


@pytest.fixture(scope="module")
def built(settings: Any) -> Path:
    """The build the app serves: console/dist/m, or m/ below TRACECODE_CONSOLE_DIST."""
    if not (mobile_dir(settings) / "index.html").is_file():
        pytest.fail("console/dist/m is missing: run `make console` (make test builds it)")
    return mobile_dir(settings)


async def test_m_redirects_into_the_service_workers_scope(client: Any, built: Path) -> None:
    answer = await client.get("/m", follow_redirects=False)
    assert answer.status_code == 302 and answer.headers["location"] == "/m/"
    answer = await client.get("/m?lang=en", follow_redirects=False)
    assert answer.headers["location"] == "/m/?lang=en"


async def test_the_app_and_its_routes_answer_index_html(client: Any, built: Path) -> None:
    index = (built / "index.html").read_text()
    assert '<link rel="manifest" href="/m/manifest.webmanifest"' in index
    for path in ("/m/", "/m/login", "/m/inspect", "/m/documents/12?x=1", "/m/queue"):
        answer = await client.get(path)
        assert answer.status_code == 200, path
        assert answer.text == index
        assert answer.headers["content-type"].startswith("text/html")
        assert answer.headers["cache-control"] == "no-cache"
        assert answer.headers["content-security-policy"] == CSP
        assert "camera=(self)" in answer.headers["permissions-policy"]
        assert "geolocation=(self)" in answer.headers["permissions-policy"]
    assert "default-src 'self'; font-src 'self' data:; script-src 'self';" in CSP
    # nothing from another origin: every script and style of the page is below /m/, and no
    # file of the build names a CDN (Vant's icon font has one as a fallback: the build drops it)
    for ref in re.findall(r'(?:src|href)="([^"]+)"', index):
        assert ref.startswith("/m/"), ref
    for file in (built / "assets").iterdir():
        text = file.read_text(errors="replace")
        assert not re.search(r"url\((['\"]?)(https?:)?//", text), file.name
        assert not re.search(r"//(at\.alicdn|cdn\.jsdelivr|fastly\.jsdelivr|unpkg)\.", text), (
            file.name
        )


async def test_the_manifest_makes_it_installable(client: Any, built: Path) -> None:
    answer = await client.get("/m/manifest.webmanifest")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/manifest+json")
    assert answer.headers["cache-control"] == "no-cache"
    manifest = json.loads(answer.content)
    assert manifest["start_url"] == "/m/" and manifest["scope"] == "/m/"
    assert manifest["display"] == "standalone"
    sizes = {icon["sizes"] for icon in manifest["icons"] if icon["type"] == "image/png"}
    assert {"192x192", "512x512"} <= sizes
    for icon in manifest["icons"]:
        image = await client.get(icon["src"])
        assert image.status_code == 200, icon["src"]
        assert image.headers["content-type"].startswith(icon["type"])
        if icon["type"] == "image/png":
            assert image.content.startswith(b"\x89PNG")
            width, height = (
                int.from_bytes(image.content[16:20]),
                int.from_bytes(image.content[20:24]),
            )
            assert f"{width}x{height}" == icon["sizes"]


async def test_the_service_worker_caches_the_whole_shell(client: Any, built: Path) -> None:
    answer = await client.get("/m/sw.js")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert answer.headers["cache-control"] == "no-cache"  # a new build's worker is seen at once
    shell = json.loads(re.search(r"const SHELL = (\[.*?\])\n", answer.text).group(1))  # type: ignore[union-attr]
    built_files = {f"assets/{p.name}" for p in (built / "assets").iterdir()}
    assert built_files <= set(shell)  # every chunk, the camera's included: it works offline
    assert "./" in shell and "manifest.webmanifest" in shell
    assert re.search(r"const VERSION = '[0-9a-f]{16}'", answer.text)
    for file in shell:  # and every file it caches is there (a 404 would fail its install)
        got = await client.get(f"/m/{file}" if file != "./" else "/m/")
        assert got.status_code == 200, file


async def test_assets_are_immutable_and_gzipped_and_a_missing_one_is_a_404(
    client: Any, built: Path
) -> None:
    script = next((built / "assets").glob("index-*.js"))
    answer = await client.get(f"/m/assets/{script.name}", headers={"Accept-Encoding": "gzip"})
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert answer.headers["content-encoding"] == "gzip"
    assert answer.content == script.read_bytes()
    missing = await client.get("/m/assets/nothing-here.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    for path in ("/m/../pyproject.toml", "/m/%2e%2e/%2e%2e/pyproject.toml", "/m/../index.html"):
        answer = await client.get(path)
        assert "[project]" not in answer.text


@pytest.mark.parametrize(
    "path",
    [
        "/m/registerSW.js",  # a script at the app's root, as sw.js is
        "/m/icon-144.png",  # an icon a manifest of another build names
        "/m/old-manifest.webmanifest",
        "/m/documents/12/photo.jpg",
    ],
)
async def test_a_missing_file_outside_assets_is_a_404_not_index_html(
    client: Any, built: Path, path: str
) -> None:
    """A probe: a missing file was a 404 only under ``/assets/``; a name with a file's extension
    at the app's root (where sw.js, the manifest and the icons live) got index.html, 200
    text/html: ``importScripts``, the manifest's icon fetch or the worker's ``fetch(request)``
    for a file it did not cache received HTML, blocked silently (``nosniff``) with a 200 that
    caches keep. Now such a path is a 404; the app's routes (no extension) are index.html."""
    answer = await client.get(path)
    assert answer.status_code == 404, (path, answer.status_code, answer.headers["content-type"])
    assert answer.json()["error"]["code"] == "not_found"
    assert (await client.get("/m/documents/12")).text == (built / "index.html").read_text()


async def test_the_console_does_not_carry_the_mobile_app(
    client: Any, built: Path, settings: Any
) -> None:
    """Separate builds: the console's scripts hold no Vant and no ZXing."""
    scripts = list((dist_dir(settings) / "assets").glob("*.js"))
    assert scripts
    for script in scripts:
        text = script.read_text()
        assert "van-nav-bar" not in text and "BrowserMultiFormatReader" not in text, script.name


async def test_without_a_build_the_app_is_a_503_page_saying_make_console(
    client: Any, app: Any, tmp_path: Path
) -> None:
    settings = app.state.settings
    app.state.settings = msgspec.structs.replace(settings, console_dist=str(tmp_path / "none"))
    try:
        for path in ("/m/", "/m/inspect"):
            answer = await client.get(path)
            assert answer.status_code == 503
            assert "make console" in answer.text and "mobile" in answer.text
    finally:
        app.state.settings = settings


async def test_the_member_pages_left_m_for_member(client: Any, built: Path) -> None:
    """/m was the consumer member pages' prefix; they live under /member now."""
    answer = await client.get("/member", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/member/login"
    answer = await client.get("/member/login")
    assert answer.status_code == 200 and "/m/" not in answer.text
    assert '<div id="app">' not in answer.text  # the server-rendered page, not the staff app
    assert (await client.get("/m/login")).text == (built / "index.html").read_text()
