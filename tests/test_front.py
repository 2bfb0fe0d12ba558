"""The request layer in front of every request (issue 21): request ids, per-route metrics, the
access log written off the request path and its sampling, errors logged with their context."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from litestar import get
from litestar.response import Stream

from app._core import RequestLog
from app.codes.batches import VoidedMidStream
from app.config import SettingsError, load_settings
from app.errors import exception_handlers
from app.front import Tracecode
from app.logs import configure_logging, writer

KEY = "5a" * 32


@contextmanager
def captured_log() -> Iterator[io.StringIO]:
    """What the log writer writes while the block runs (flushed at its end), the access log on
    (the test session runs at WARNING)."""
    writer.flush()
    saved, buffer = writer.stream, io.StringIO()
    writer.stream = buffer
    access_log = logging.getLogger("tracecode.access")
    level = access_log.level
    access_log.setLevel(logging.INFO)
    try:
        yield buffer
        writer.flush()
    finally:
        access_log.setLevel(level)
        writer.stream = saved


def lines(buffer: io.StringIO, logger: str = "tracecode.access") -> list[dict[str, Any]]:
    parsed = [json.loads(line) for line in buffer.getvalue().splitlines() if line]
    return [line for line in parsed if line["logger"] == logger]


def sample(metrics: str, name: str, **labels: str) -> float:
    """One sample's value in Prometheus text (0 when absent); labels in the order written."""
    want = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "} "
    for line in metrics.splitlines():
        if line.startswith(want):
            return float(line[len(want) :])
    return 0.0


async def test_every_answer_carries_its_request_id_and_the_access_line_has_it(
    client: Any,
) -> None:
    with captured_log() as log:
        given = await client.get("/ping", headers={"X-Request-ID": "order-7-abc"})
        new = [await client.get("/ping") for _ in range(3)]
        unmatched = await client.get("/no/such/route")
        refused = await client.get("/ping", params={"q": "a\x00b"})  # the edge check's 400
    assert given.headers["x-request-id"] == "order-7-abc"
    ids = [r.headers["x-request-id"] for r in new]
    assert len(set(ids)) == 3 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert unmatched.status_code == 404 and unmatched.headers["x-request-id"]
    assert refused.status_code == 400 and refused.headers["x-request-id"]
    for hostile in (b"<script>", "é".encode("latin-1") * 3, b"a" * 65):  # replaced, not cut
        response = await client.get("/ping", headers={"X-Request-ID": hostile})
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"]), hostile
    access = {line["request_id"]: line for line in lines(log)}
    assert access["order-7-abc"]["status"] == 200 and access["order-7-abc"]["path"] == "/ping"
    assert all(access[i]["method"] == "GET" for i in ids)
    assert access[unmatched.headers["x-request-id"]]["status"] == 404
    assert access[refused.headers["x-request-id"]]["status"] == 400
    line = access[ids[0]]
    assert set(line) == {"ts", "level", "logger", "msg", "request_id", "method", "path"} | {
        "status",
        "ms",
    }
    assert line["level"] == "INFO" and line["msg"] == "request" and line["ms"] >= 0


async def test_access_lines_stay_json_whatever_the_path(client: Any) -> None:
    """The access line is written by the Rust core: quotes, backslashes, non-ASCII and
    escaped control characters in a path must still make one valid JSON line each."""
    paths = ['/no/"quoted"\\back', "/no/é中文", "/no/%0Anew", "/no/%7F"]
    with captured_log() as log:
        answers = [await client.get(path) for path in paths]
    by_id = {line["request_id"]: line for line in lines(log)}
    logged = [by_id[r.headers["x-request-id"]] for r in answers]
    want = ['/no/"quoted"\\back', "/no/é中文", "/no/\nnew", "/no/\x7f"]
    assert [line["path"] for line in logged] == want
    assert [line["status"] for line in logged] == [404, 404, 404, 400]  # \x7f: refused
    assert all(isinstance(line["ts"], float) and line["ms"] >= 0 for line in logged)


def test_a_path_python_cannot_encode_is_logged_with_a_replacement_character() -> None:
    """A lone surrogate (undecodable bytes kept by ``surrogateescape``) cannot be UTF-8: the
    request log writes U+FFFD in its place rather than fail the request."""
    log = RequestLog()
    assert not log.done("r-1", "GET", "/a\udc80b", "unmatched", 404, 0.002, 1.0, True)
    (line,) = [json.loads(raw) for raw in log.take().splitlines()]
    path = line["path"]  # the surrogate's bytes, each as U+FFFD
    assert path[:2] == "/a" and path[-1] == "b" and set(path[2:-1]) == {"\ufffd"}
    assert line["status"] == 404 and line["ms"] == 2.0
    assert log.take() == b""
    ((method, route, statuses, buckets, total),) = log.series()
    assert (method, route, statuses, sum(buckets), total) == (
        "GET",
        "unmatched",
        [(404, 1)],
        1,
        0.002,
    )


async def test_metrics_count_each_route_by_its_template_and_status(client: Any) -> None:
    before = (await client.get("/metrics")).text
    for _ in range(3):
        assert (await client.get("/ping")).status_code == 200
    assert (await client.head("/ping")).status_code == 200
    assert (await client.post("/alerts/12345/acknowledge")).status_code == 401
    assert (await client.get("/nowhere/at/all")).status_code == 404
    assert (await client.get("/v1/verify")).status_code == 405  # the plain ASGI route
    after = (await client.get("/metrics")).text

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    total = "tracecode_http_requests_total"
    assert grew(total, method="GET", route="/ping", status="200") == 3
    assert grew(total, method="HEAD", route="/ping", status="200") == 1
    route = "/alerts/{alert_id}/acknowledge"
    assert grew(total, method="POST", route=route, status="401") == 1
    assert grew(total, method="GET", route="unmatched", status="404") == 1
    assert grew(total, method="GET", route="/v1/verify", status="405") == 1
    # the histogram: every request in +Inf and in the count, none above it
    hist = "tracecode_http_request_seconds"
    assert grew(f"{hist}_count", method="GET", route="/ping") == 3
    assert grew(f"{hist}_bucket", le="+Inf", method="GET", route="/ping") == 3
    assert grew(f"{hist}_bucket", le="10.0", method="GET", route="/ping") == 3
    assert sample(after, f"{hist}_sum", method="GET", route="/ping") > 0
    assert "# TYPE tracecode_http_requests_total counter" in after
    assert "# TYPE tracecode_http_request_seconds histogram" in after


async def test_access_lines_are_sampled_below_400_only(client: Any, app: Any) -> None:
    saved = app.access_log_sample
    try:
        app.access_log_sample = 0.0
        with captured_log() as log:
            ok = [await client.get("/ping") for _ in range(20)]
            missing = await client.get("/not/here")
        logged = {line["request_id"] for line in lines(log)}
        assert not logged & {r.headers["x-request-id"] for r in ok}
        assert missing.headers["x-request-id"] in logged  # a 4xx is always logged
        app.access_log_sample = 0.5
        with captured_log() as log:
            ok = [await client.get("/ping") for _ in range(400)]
        assert 100 < len(lines(log)) < 300  # about half (binomial: 200 ± 3.5 sigma)
    finally:
        app.access_log_sample = saved


def test_the_sampling_setting_is_a_fraction() -> None:
    assert load_settings({"TRACECODE_MASTER_KEY": KEY}).access_log_sample == 1.0
    env = {"TRACECODE_MASTER_KEY": KEY, "TRACECODE_ACCESS_LOG_SAMPLE": "0.05"}
    assert load_settings(env).access_log_sample == 0.05
    for bad in ("1.5", "-0.1", "half"):
        with pytest.raises(SettingsError, match="TRACECODE_ACCESS_LOG_SAMPLE"):
            load_settings({**env, "TRACECODE_ACCESS_LOG_SAMPLE": bad})


class _StuckStream(io.StringIO):
    """A log destination that blocks every write until released (a full pipe, a slow disk)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()

    def write(self, text: str) -> int:
        self.entered.set()
        self.release.wait(30)
        return super().write(text)


async def test_a_stuck_log_destination_does_not_hold_requests_up(client: Any) -> None:
    stuck = _StuckStream()
    with captured_log():
        writer.stream = stuck  # captured_log puts the real stream back
        try:
            first = await client.get("/ping")  # its line: the writer thread then blocks on it
            assert await asyncio.to_thread(stuck.entered.wait, 5), "the writer never wrote"
            started = time.monotonic()
            answered = [await client.get("/ping") for _ in range(50)]
            assert time.monotonic() - started < 5  # not waiting for the stuck write (30 s)
            assert all(r.status_code == 200 for r in answered)
        finally:
            stuck.release.set()
        await asyncio.to_thread(writer.flush)
    ids = {json.loads(line).get("request_id") for line in stuck.getvalue().splitlines()}
    assert first.headers["x-request-id"] in ids
    assert {r.headers["x-request-id"] for r in answered} <= ids  # late, but every one


@get("/boom", sync_to_thread=False)
def boom() -> None:
    raise RuntimeError("the disk is on fire")


async def test_an_unexpected_error_is_logged_with_its_context() -> None:
    app = Tracecode(route_handlers=[boom], exception_handlers=exception_handlers)
    configure_logging("WARNING")  # as the test session runs (errors are above it)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    with captured_log() as log:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.json()["error"]["details"] == {"request_id": "boom-1"}
    (error,) = lines(log, "tracecode.errors")
    assert error["level"] == "ERROR" and error["request_id"] == "boom-1"
    assert error["method"] == "GET" and error["path"] == "/boom" and error["route"] == "/boom"
    assert "the disk is on fire" in error["exc"]
    (line,) = lines(log)
    assert line["request_id"] == "boom-1" and line["status"] == 500


async def test_a_phone_in_a_path_is_not_logged(client: Any, login: Any) -> None:
    """Probe N: ``PUT /sms/opt-outs/{phone}`` wrote the whole phone into the access line, which
    staff who see phones masked may read. Such a route's line shows its template."""
    marketer = await login("marketer")
    phone = f"139{int(time.time() * 1000) % 10**8:08d}"
    with captured_log() as log:
        answers = [
            await client.put(f"/sms/opt-outs/{phone}", headers=marketer),
            await client.delete(f"/sms/opt-outs/{phone}", headers=marketer),
            await client.get("/sms/opt-outs", headers=marketer),
        ]
    assert [a.status_code for a in answers] == [204, 204, 200]
    by_id = {line["request_id"]: line for line in lines(log)}
    logged = [by_id[a.headers["x-request-id"]] for a in answers]
    assert [line["path"] for line in logged] == ["/sms/opt-outs/{phone}"] * 2 + ["/sms/opt-outs"]
    assert phone not in log.getvalue()
    # answered before routing (a method no route has): by the prefix (review R2)
    with captured_log() as log:
        refused = await client.get(f"/sms/opt-outs/{phone}", headers=marketer)
    assert refused.status_code == 405
    assert phone not in log.getvalue()


async def test_a_phone_in_a_path_answered_before_routing_is_not_logged(client: Any) -> None:
    """Probe S: ``/sms//opt-outs/{phone}`` is routed as ``/sms/opt-outs/{phone}``, but its
    405 (answered before routing) logged the whole phone: the prefix did not match."""
    with captured_log() as log:
        answers = [
            await client.get(path)
            for path in ("/sms/opt-outs/13800138003", "/sms//opt-outs/13800138003")
        ]
    by_id = {line["request_id"]: line for line in lines(log)}
    for answer in answers:
        line = by_id[answer.headers["x-request-id"]]
        assert "13800138003" not in line["path"], line


def test_two_processes_logging_to_one_pipe_never_tear_a_line() -> None:
    """Probe S: with two API workers on one standard error, each process's batch went out in
    one write; a pipe takes a larger write in pieces, so under a slow reader the two processes'
    lines were torn into each other (invalid JSON). Writes are now of whole lines, at most
    PIPE_BUF bytes each where the lines allow."""
    import json
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from app.logs import PIPE_BUF, whole_lines

    script = (
        "import json, sys\n"
        "from app.logs import writer\n"
        "for i in range(3000):\n"
        "    writer.put(json.dumps({'p': sys.argv[1], 'i': i, 'pad': 'x' * (i % 700)}))\n"
        "writer.flush()\n"
    )
    read_end, write_end = os.pipe()
    root = Path(__file__).resolve().parent.parent
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(n)], stderr=write_end, cwd=root)
        for n in range(2)
    ]
    os.close(write_end)
    out = bytearray()
    with os.fdopen(read_end, "rb", buffering=0) as reader:
        while chunk := reader.read(2048):  # a slow reader: the writers wait on a full pipe
            out += chunk
            time.sleep(0.0002)
    for proc in procs:
        assert proc.wait(timeout=30) == 0
    lines = bytes(out).splitlines()
    assert len(lines) == 6000
    seen = {(entry["p"], entry["i"]) for entry in map(json.loads, lines)}  # each line whole
    assert len(seen) == 6000
    long_line = b"y" * (PIPE_BUF + 10) + b"\n"
    assert whole_lines(b"a\n" + long_line + b"b\n") == [b"a\n", long_line, b"b\n"]


async def test_metrics_add_the_counts_of_the_servers_other_workers(
    client: Any, tmp_path: Any
) -> None:
    """Probe S: with several API workers, each scrape was answered by one of them with its
    own counts (60, 40, 60: counters going backwards). A worker's /metrics adds the counts the
    server's other workers wrote, and its own file is read back by them."""
    import msgspec

    from app._core import REQUEST_BUCKETS
    from app.ops import request_metrics as metrics

    directory = tmp_path / "metrics" / "1"
    directory.mkdir(parents=True)
    other = [("GET", "/ping", [(200, 5)], [5] + [0] * len(REQUEST_BUCKETS), 0.01)]
    (directory / "99-1.json").write_bytes(msgspec.json.encode(other))
    (directory / "98-1.json").write_bytes(b"{torn")  # one being replaced: skipped
    total = "tracecode_http_requests_total"
    before = sample(
        (await client.get("/metrics")).text, total, method="GET", route="/ping", status="200"
    )
    metrics.snapshots = metrics.Snapshots(directory)
    try:
        text = (await client.get("/metrics")).text
        metrics.snapshots.write()
        mine = [s for s in metrics.Snapshots(directory).others() if s[1] == "/ping"]
    finally:
        metrics.snapshots = None
    assert sample(text, total, method="GET", route="/ping", status="200") == before + 5
    hist = "tracecode_http_request_seconds"
    assert sample(text, f"{hist}_count", method="GET", route="/ping") >= 5
    assert sum(n for s in mine for status, n in s[2] if status == 200) >= before + 5


async def _chunks(fail_after: int | None, cut: bool = False) -> Any:
    for n in range(1000):
        if n == fail_after:
            if cut:
                raise VoidedMidStream("a batch of this stream was voided while it was sent")
            raise RuntimeError("the export's query failed")
        yield b"x" * 1024
        await asyncio.sleep(0)


@get("/download", sync_to_thread=False)
def download(fail: bool = False, void: bool = False) -> Stream:
    return Stream(_chunks(3 if fail or void else None, cut=void), media_type="text/csv")


async def _drive(
    app: Tracecode, query: bytes, rid: bytes, hang_up_after: int | None
) -> tuple[int, bool]:
    """One GET through the app as a server calls it; the client hangs up after it has read
    ``hang_up_after`` body messages. The body messages read, and whether the answer ended (its
    last body message said so; the app raised nothing)."""
    bodies, ended, gone = 0, False, asyncio.Event()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/download",
        "raw_path": b"/download",
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"t"), (b"x-request-id", rid)],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal bodies, ended
        if message["type"] == "http.response.body":
            bodies += 1
            ended = not message.get("more_body", False)
            if bodies == hang_up_after or ended:
                gone.set()  # a server's receive says so once the answer is whole, too

    await app(scope, receive, send)  # an error after the start is the app's to log, not raise
    return bodies, ended


async def test_a_download_the_client_hung_up_on_is_logged_as_499() -> None:
    """Probe S L10: a streamed download cut off by its client was logged and counted as 200,
    as if delivered. Now 499 (the client closed the request); a stream that fails after its
    start is a 500; a whole one a 200."""
    app = Tracecode(route_handlers=[download], exception_handlers=exception_handlers)
    configure_logging("WARNING")
    with captured_log() as log:
        (cut, _) = await _drive(app, b"", b"cut-1", hang_up_after=5)
        (failed, _) = await _drive(app, b"fail=true", b"failed-1", hang_up_after=None)
        (whole, _) = await _drive(app, b"", b"whole-1", hang_up_after=None)
    assert cut < 1000 and failed == 3 and whole == 1000 + 1  # the last: the end message
    status = {line["request_id"]: line["status"] for line in lines(log)}
    assert status == {"cut-1": 499, "failed-1": 500, "whole-1": 200}


async def test_a_stream_that_fails_after_its_start_logs_the_error_with_its_context() -> None:
    """A probe: a streamed answer (a CSV export) whose generator raised after the answer
    started was access-logged as 500, but the error itself was never a JSON line: the request
    layer raised it on to the server after the request id was reset, and granian printed it as
    a multi-line plain-text traceback of its own, without the request id or the cause. Now one
    ERROR line of ``tracecode.errors`` with the request id, method, path, route and the
    original exception, and nothing raised: the answer is left unended, which the server turns
    into a cut download (granian closes the connection without the last chunk)."""
    app = Tracecode(route_handlers=[download], exception_handlers=exception_handlers)
    configure_logging("WARNING")
    with captured_log() as log:
        bodies, ended = await _drive(app, b"fail=true", b"midstream-1", hang_up_after=None)
    assert (bodies, ended) == (3, False)  # the client never sees an end
    (access,) = [line for line in lines(log) if line["request_id"] == "midstream-1"]
    assert access["status"] == 500
    errors = [line for line in lines(log, "tracecode.errors") if line["level"] == "ERROR"]
    (error,) = [line for line in errors if line.get("request_id") == "midstream-1"]
    assert (error["method"], error["path"], error["route"]) == ("GET", "/download", "/download")
    assert "RuntimeError: the export's query failed" in error["exc"], error


async def test_a_stream_cut_off_on_purpose_is_a_warning_not_a_server_error() -> None:
    """A void batch's download or allocation stream is cut off on purpose (``VoidedMidStream``,
    an ``AnswerCutOff``): it was logged as an ERROR with a traceback and counted as a 500, as a
    fault of the server. Now one WARNING line ``answer cut off`` with the request's context,
    counted as 499; the answer still never ends."""
    app = Tracecode(route_handlers=[download], exception_handlers=exception_handlers)
    configure_logging("WARNING")
    with captured_log() as log:
        bodies, ended = await _drive(app, b"void=true", b"voided-1", hang_up_after=None)
    assert (bodies, ended) == (3, False)
    (access,) = [line for line in lines(log) if line["request_id"] == "voided-1"]
    assert access["status"] == 499
    errors = lines(log, "tracecode.errors")
    (warning,) = [line for line in errors if line.get("request_id") == "voided-1"]
    assert warning["level"] == "WARNING" and "exc" not in warning, warning
    assert warning["msg"].startswith("answer cut off: a batch of this stream was voided")
    assert (warning["method"], warning["path"]) == ("GET", "/download")


async def test_a_unicode_line_separator_in_a_path_does_not_split_a_log_line(
    client: Any,
) -> None:
    """A probe: the access line wrote U+2028 / U+2029 of a path raw (the Rust escape took only
    C0 controls and DEL; the edge check refuses C1 controls and bidi overrides, not these), and
    so did the JSON formatter of the other lines: a reader splitting on Unicode line ends —
    ``str.splitlines`` (``lines`` above), JavaScript tooling — saw one line as two, the second
    forged by an anonymous caller. Now written escaped (``\\u2028``), as NEL (U+0085) too."""
    with captured_log() as log:
        answer = await client.get('/no/such%E2%80%A8{"forged":1}%E2%80%A9x')
        logging.getLogger("tracecode.probe").warning('a\u2028{"forged":2}\u2029b\x85c')
    assert answer.status_code == 404
    text = log.getvalue()
    assert "\\u2028" in text and "\\u2029" in text and "\\u0085" in text
    pieces = [json.loads(piece) for piece in text.splitlines() if piece]  # each a whole line
    (access,) = [line for line in pieces if line["logger"] == "tracecode.access"]
    assert access["path"] == '/no/such\u2028{"forged":1}\u2029x'
    (other,) = [line for line in pieces if line["logger"] == "tracecode.probe"]
    assert other["msg"] == 'a\u2028{"forged":2}\u2029b\x85c'
