"""The load-test tools run as an engineer runs them (subprocesses): ``loadtests/stack.py`` says
in one line why the stack did not start, ``loadtests/wrk_verify.sh`` loads loopback only.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PYTHON = sys.executable


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TRACECODE_VAR_DIR"] = str(tmp_path / "var")
    env["TRACECODE_REDIS_NAMESPACE"] = f"testload{secrets.token_hex(3)}"
    return env


def test_stack_port_in_use_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """A probe: ``loadtests/stack.py --port P -- COMMAND`` (README "Load tests") with P already
    taken: granian cannot bind, and the engineer got a Python traceback (RuntimeError "a stack
    process exited" from Stack.wait_ready). It should print one line saying the port is in use
    (or that the API did not start, with the log to read) and exit non-zero."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [PYTHON, "loadtests/stack.py", "--port", str(port), "--count", "30", "--", "true"],
            env=_env(tmp_path),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr == f"stack.py: port {port} is in use on 127.0.0.1\n"


def test_wrk_verify_refuses_a_url_whose_host_is_not_loopback(tmp_path: Path) -> None:
    """A probe: ``loadtests/wrk_verify.sh`` promises "127.0.0.1 only" and checked the URL with
    the shell pattern ``http://127.0.0.1:*``. ``--url http://127.0.0.1:80@other-host:8000``
    passes it, and wrk loads other-host (the part before ``@`` is userinfo): any host on the
    Internet can be load-tested from this script. (Shown here with 127.0.0.2 standing in for
    other-host.) It should refuse with exit 2 unless the URL's host is
    127.0.0.1/localhost/[::1]."""
    import socket
    import threading

    codes = tmp_path / "codes.csv"
    codes.write_text("0123456789ABCDEFGHJK,123456,http://127.0.0.1/x\n")
    reached: list[bool] = []
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.2", 0))
        other.listen()
        other.settimeout(6)
        port = other.getsockname()[1]

        def accept() -> None:
            try:
                conn, _ = other.accept()
                reached.append(True)
                conn.close()
            except OSError:
                pass

        thread = threading.Thread(target=accept)
        thread.start()
        done = subprocess.run(
            ["bash", "loadtests/wrk_verify.sh", "--url", f"http://127.0.0.1:80@127.0.0.2:{port}",
             "--codes", str(codes), "-d", "1s", "-c", "1"],
            env=_env(tmp_path),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )  # fmt: skip
        thread.join(timeout=8)
    assert not reached, "wrk connected to the host after '@'"
    assert done.returncode == 2, done.stdout[-1000:] + done.stderr[-1000:]
