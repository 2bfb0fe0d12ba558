"""Photos in an S3-compatible store (``TRACECODE_MEDIA_STORE=s3``, app/media/s3.py).

The signing is checked against the worked examples of AWS's "Signature Version 4" S3
documentation (known answers: same keys, date, requests, same signatures). The store is run end
to end against s3rver, an S3-protocol server on disk started here (npm, tests/s3server/; `make
test` installs it): photos go up, come back and go away through the API and the S3 protocol.
s3rver checks that the access key id exists and that the Authorization header is well formed,
but it does NOT verify Signature Version 4 signatures; that the signatures are right is what the
known-answer tests show.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from app.config import SettingsError, load_settings
from app.errors import NotFound, ValidationFailed
from app.media.s3 import EMPTY_SHA256, S3Store, canonical_request, sign, signing_key
from app.media.storage import store_from_settings
from tests.helpers import assert_error, served
from tests.images import jpeg

SERVER_DIR = Path(__file__).parent / "s3server"
BUCKET = "tracecode-photos"
JPEG = jpeg(bytes(range(256)) * 8)

# The S3 documentation's examples (sig-v4-header-based-auth): one key pair, one instant.
AWS = {
    "region": "us-east-1",
    "access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "amz_date": "20130524T000000Z",
}
HOST = "examplebucket.s3.amazonaws.com"
CREDENTIAL = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"


def test_get_object_example_of_the_s3_documentation() -> None:
    headers = {
        "Host": HOST,
        "Range": "bytes=0-9",
        "x-amz-content-sha256": EMPTY_SHA256,
        "x-amz-date": "20130524T000000Z",
    }
    canonical, signed = canonical_request("GET", "/test.txt", {}, headers, EMPTY_SHA256)
    assert signed == "host;range;x-amz-content-sha256;x-amz-date"
    assert canonical == (
        "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
        "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        "x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
    )
    assert sign("GET", "/test.txt", {}, headers, EMPTY_SHA256, **AWS) == (
        f"{CREDENTIAL}, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_put_object_example_of_the_s3_documentation() -> None:
    body = b"Welcome to Amazon S3."
    payload = hashlib.sha256(body).hexdigest()
    assert payload == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
    headers = {
        "Host": HOST,
        "Date": "Fri, 24 May 2013 00:00:00 GMT",
        "x-amz-date": "20130524T000000Z",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256": payload,
    }
    canonical, _ = canonical_request("PUT", "/test$file.text", {}, headers, payload)
    assert canonical.split("\n")[1] == "/test%24file.text"  # the key's "$" encoded once
    assert sign("PUT", "/test$file.text", {}, headers, payload, **AWS) == (
        f"{CREDENTIAL}, "
        "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
        "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
    )


def test_query_string_examples_of_the_s3_documentation() -> None:
    headers = {"Host": HOST, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": AWS["amz_date"]}
    lifecycle = sign("GET", "/", {"lifecycle": ""}, headers, EMPTY_SHA256, **AWS)
    assert lifecycle.endswith(
        "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
    )
    listing = sign("GET", "/", {"prefix": "J", "max-keys": "2"}, headers, EMPTY_SHA256, **AWS)
    assert listing.endswith(
        "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
    )
    # one bit of the secret, the day or the region changes the key
    key = signing_key(AWS["secret"], "20130524", "us-east-1")
    assert key != signing_key(AWS["secret"][:-1] + "X", "20130524", "us-east-1")
    assert key != signing_key(AWS["secret"], "20130525", "us-east-1")
    assert key != signing_key(AWS["secret"], "20130524", "eu-west-1")


S3_ENV = {
    "TRACECODE_MEDIA_STORE": "s3",
    "TRACECODE_MEDIA_S3_ENDPOINT": "http://127.0.0.1:9000",
    "TRACECODE_MEDIA_S3_BUCKET": "photos",
    "TRACECODE_MEDIA_S3_ACCESS_KEY_ID": "tracecode",
    "TRACECODE_MEDIA_S3_SECRET_ACCESS_KEY": "a-secret-of-forty-characters-0123456789",
}


def test_s3_settings_are_checked_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as missing:
        load_settings({"TRACECODE_MEDIA_STORE": "s3", "TRACECODE_MEDIA_S3_BUCKET": "photos"})
    message = str(missing.value)
    assert "TRACECODE_MEDIA_S3_ENDPOINT" in message
    assert "TRACECODE_MEDIA_S3_ACCESS_KEY_ID" in message
    assert "TRACECODE_MEDIA_S3_SECRET_ACCESS_KEY" in message
    assert "TRACECODE_MEDIA_S3_BUCKET" not in message
    for name, bad in (
        ("TRACECODE_MEDIA_S3_ENDPOINT", "ftp://127.0.0.1"),
        ("TRACECODE_MEDIA_S3_ENDPOINT", "http://127.0.0.1:9000/elsewhere"),
        ("TRACECODE_MEDIA_S3_BUCKET", "Not_A_Bucket"),
        ("TRACECODE_MEDIA_S3_PREFIX", "../up/"),
    ):
        with pytest.raises(SettingsError, match=name):
            load_settings({**S3_ENV, name: bad})
    both = {**S3_ENV, "TRACECODE_MEDIA_S3_SECRET_ACCESS_KEY_FILE": str(tmp_path / "s")}
    with pytest.raises(SettingsError, match="only one"):
        load_settings(both)
    del both["TRACECODE_MEDIA_S3_SECRET_ACCESS_KEY"]
    with pytest.raises(SettingsError, match="cannot be read"):
        load_settings(both)
    (tmp_path / "s").write_text("from-a-file\n")
    (tmp_path / "s").chmod(0o600)  # a secret file others may read is refused
    settings = load_settings(both)
    assert settings.media_s3_secret() == "from-a-file"
    store = store_from_settings(settings)
    assert isinstance(store, S3Store) and store.path(f"7/2026/01/{'a' * 32}.jpg") == (
        f"/photos/7/2026/01/{'a' * 32}.jpg"
    )
    assert "from-a-file" not in repr(store) and "from-a-file" not in repr(settings)
    with pytest.raises(ValidationFailed):
        store.path("../../etc/passwd")


def _files(root: Path, pattern: str) -> list[Path]:
    return list(Path(root).rglob(pattern))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3rver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """s3rver on 127.0.0.1 at a free port, with one bucket, storing under a temporary dir."""
    node = shutil.which("node")
    binary = SERVER_DIR / "node_modules" / "s3rver" / "bin" / "s3rver.js"
    if node is None:
        pytest.skip("node is not on PATH (Debian: apt-get install nodejs npm)")
    assert binary.exists(), "s3rver is not installed: cd tests/s3server && npm ci (make test)"
    data, port = tmp_path_factory.mktemp("s3rver"), _free_port()
    command = [node, str(binary), "-d", str(data), "-a", "127.0.0.1", "-p", str(port), "-s"]
    process = subprocess.Popen(
        [*command, "--no-vhost-buckets", "--configure-bucket", BUCKET], stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "s3rver did not listen within 30 s"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", data / BUCKET
    finally:
        process.terminate()
        process.wait(timeout=10)


async def _serve(app: Any) -> AsyncIterator[None]:
    """Run an app's lifespan in a task of its own (its task group is entered and left there)."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(run())
    await asyncio.wait([task, asyncio.create_task(started.wait())], return_when="FIRST_COMPLETED")
    if task.done():
        task.result()
    yield
    stop.set()
    await task


def _s3_settings(settings: Any, endpoint: str, **changes: Any) -> Any:
    s3 = {
        "media_store": "s3",
        "media_s3_endpoint": endpoint,
        "media_s3_bucket": BUCKET,
        "media_s3_access_key_id": "S3RVER",  # s3rver's one account
        "media_s3_secret_access_key": "S3RVER",
        "media_s3_prefix": "tc-test/",
    }
    return msgspec.structs.replace(settings, **{**s3, **changes})


@pytest.fixture(scope="module")
async def s3_client(settings: Any, demo: Any, s3rver: tuple[str, Path]) -> AsyncIterator[Any]:
    """A client of an app of its own whose photos go to s3rver."""
    from app.main import create_app

    app: Any = create_app(_s3_settings(settings, s3rver[0]))
    async for _ in _serve(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", timeout=60
        ) as client:
            yield client


async def test_photos_go_to_the_bucket_come_back_and_go_away(
    s3_client: Any, login: Any, settings: Any, s3rver: tuple[str, Path], conn: Any
) -> None:
    endpoint, bucket_dir = s3rver
    rep, supervisor = await login("fieldrep"), await login("fieldsup")
    made = await s3_client.post(
        "/media/photos", headers={**rep, "Content-Type": "image/jpeg"}, content=JPEG
    )
    assert made.status_code == 201, made.text
    photo = made.json()
    row = await (
        await conn.execute("SELECT storage_key FROM media_photos WHERE id = %s", (photo["id"],))
    ).fetchone()
    key = row["storage_key"]
    # in the bucket under the prefix, not in the local media directory
    name = f"{photo['id'].replace('-', '')}.jpg"
    kept = _files(bucket_dir, f"{name}*")  # s3rver's files of that object
    assert kept and all(p.relative_to(bucket_dir).parts[0] == "tc-test" for p in kept)
    assert not _files(settings.media_path, name)
    # read back over the S3 protocol by a store of its own, and through the API
    store = store_from_settings(_s3_settings(settings, endpoint))
    assert await store.get(key) == JPEG
    for headers in (rep, supervisor):
        served = await s3_client.get(photo["url"], headers=headers)
        assert served.status_code == 200 and served.content == JPEG
        assert served.headers["content-type"] == "image/jpeg"
    assert_error(await s3_client.get(photo["url"], headers=await login("fieldrep2")), 404)
    # gone from the bucket: the store says 404, the API too
    await store.delete(key)
    await store.delete(key)  # deleting what is gone is no error
    with pytest.raises(NotFound):
        await store.get(key)
    assert not _files(bucket_dir, f"{name}*")
    assert_error(await s3_client.get(photo["url"], headers=rep), 404, "not_found")


async def test_a_store_that_refuses_or_is_down_keeps_no_photo(
    settings: Any, demo: Any, login: Any, s3rver: tuple[str, Path], conn: Any
) -> None:
    from app.main import create_app

    rep = await login("fieldrep")
    before = await (await conn.execute("SELECT count(*) AS n FROM media_photos")).fetchone()
    cases = (
        (s3rver[0], "NOBODY", 502, "media_store_failed"),  # s3rver: 403 InvalidAccessKeyId
        (f"http://127.0.0.1:{_free_port()}", "S3RVER", 503, "media_store_unavailable"),
    )
    for endpoint, key_id, status, code in cases:
        app: Any = create_app(_s3_settings(settings, endpoint, media_s3_access_key_id=key_id))
        async for _ in _serve(app):
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver"
            ) as client:
                answer = await client.post(
                    "/media/photos", headers={**rep, "Content-Type": "image/jpeg"}, content=JPEG
                )
        error = assert_error(answer, status, code)
        assert "S3RVER" not in answer.text  # nothing of the credentials in the answer
        if code == "media_store_failed":
            assert "403" in error["message"] and "InvalidAccessKeyId" in error["message"]
    after = await (await conn.execute("SELECT count(*) AS n FROM media_photos")).fetchone()
    assert after["n"] == before["n"]  # the rows were rolled back with the failed writes


class StallingS3:
    """An "S3 server" that accepts connections, reads nothing and answers nothing until released
    (then hangs up): a photo store that is slow, not down."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.clients: list[socket.socket] = []
        self.released = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        while not self.released.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                continue
            self.clients.append(client)

    def wait_for(self, n: int, seconds: float = 10) -> None:
        deadline = time.monotonic() + seconds
        while len(self.clients) < n:
            assert time.monotonic() < deadline, f"{len(self.clients)} of {n} requests reached S3"
            time.sleep(0.05)

    def release(self) -> None:
        self.released.set()
        self.thread.join(5)
        for client in self.clients:
            client.close()
        self.sock.close()


@pytest.fixture
def stalling_s3() -> Iterator[StallingS3]:
    server = StallingS3()
    try:
        yield server
    finally:
        if not server.released.is_set():
            server.release()


async def _while_stalled(
    app: Any,
    stalling_s3: StallingS3,
    rep: dict[str, str],
    request: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]],
) -> None:
    """Two ``request``s waiting on the stalled store, with a pool of two connections: another
    request still answers; the two are 503 media_store_unavailable once the store hangs up."""
    async with served(app) as client:
        waiting = [asyncio.create_task(request(client)) for _ in range(2)]
        await asyncio.to_thread(stalling_s3.wait_for, 2)
        try:
            other = await asyncio.wait_for(client.get("/field/checkins", headers=rep), 20)
            assert other.status_code == 200, other.text
        finally:
            stalling_s3.release()
            answers = await asyncio.gather(*waiting)
    for answer in answers:
        assert_error(answer, 503, "media_store_unavailable")


def _small_pool(settings: Any, stalling_s3: StallingS3) -> Any:
    from app.main import create_app

    return create_app(
        _s3_settings(
            settings, stalling_s3.endpoint, db_pool_min=1, db_pool_max=2, db_pool_timeout=1.0
        )
    )


async def test_a_slow_photo_store_does_not_take_the_api_down(
    settings: Any, demo: Any, login: Any, stalling_s3: StallingS3
) -> None:
    """A probe: an upload inserted its row, then waited for the S3 PUT (up to 30 s) on its
    pooled connection, its transaction open: two uploads to a slow store with a pool of two
    made every other request 503. The bytes are now put holding no connection, then the row is
    written in a short transaction (an object whose row fails is deleted again)."""
    rep = await login("fieldrep")
    headers = {**rep, "Content-Type": "image/jpeg"}
    await _while_stalled(
        _small_pool(settings, stalling_s3),
        stalling_s3,
        rep,
        lambda client: client.post("/media/photos", headers=headers, content=JPEG),
    )


async def test_a_slow_photo_store_read_holds_no_database_connection(
    client: Any, settings: Any, demo: Any, login: Any, stalling_s3: StallingS3
) -> None:
    """A probe: serving a photo read its row, then fetched the object from S3 on the same
    pooled connection, idle in its transaction for as long as S3 took: a page of thumbnails
    fetched from a slow store held every connection, and the API answered 503. The row is read
    in a short transaction and the connection given back before the store is asked."""
    rep = await login("fieldrep")
    made = await client.post(
        "/media/photos", headers={**rep, "Content-Type": "image/jpeg"}, content=JPEG
    )
    assert made.status_code == 201, made.text
    url = made.json()["url"]
    await _while_stalled(
        _small_pool(settings, stalling_s3),
        stalling_s3,
        rep,
        lambda s3_client: s3_client.get(url, headers=rep),
    )
