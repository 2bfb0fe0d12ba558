"""Consumers scanning codes: POST /v1/verify under a realistic mix (issue 7, load test).

Run it with ``make loadtest`` (starts a local stack on 127.0.0.1, 30 s headless), or by hand
against a server you started, with a codes file from ``tracecode demo codes --count N``:

    LOADTEST_CODES=codes.csv .venv/bin/locust -f loadtests/locustfile.py --headless \
        -u 50 -r 10 --run-time 30s --host http://127.0.0.1:8000

(the server needs a high ``TRACECODE_VERIFY_RATE_LIMIT``: every user comes from 127.0.0.1).

The codes file (``serial,pin,url`` per line) is split into three disjoint pools: a few "copied"
serials (a counterfeiter's copies of one genuine label, scanned over and over from all over
the country → suspicious), a wrong-PIN pool (→ wrong_pin, then locked) and the genuine pool
(right PIN: first query, then repeat queries; also as GS1 Digital Link QR content and without
a PIN). Forged codes are valid-looking 20-symbol serials whose tag does not verify, and
malformed strings; both must answer not_genuine. Every answer is checked against what that
kind of code must give, using the answer's own query count against the repeat threshold
(``TRACECODE_VERIFY_REPEAT_THRESHOLD``); a wrong ``result``, a 5xx, a 429 or any other non-200
is a locust failure, so the run exits non-zero. Run it in one locust process (no ``--processes``):
the pools and the set of locked codes are shared by the users of that process.
"""

from __future__ import annotations

import itertools
import os
import random
from collections import Counter
from typing import Any

from locust import FastHttpUser, between, events, task
from locust.env import Environment

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
COPIED = 3  # serials a counterfeiter copied
WRONG_PIN_CODES = 10  # few enough that each gets locked (5 wrong PINs) within a short run
MALFORMED = ["HELLO", "12345678", "ABCD-EFGH-!JKL-MNOP", "U" * 20, "0" * 30, "问 假货 fake"]
# Provincial capitals (lat, lng): where copies of one label get scanned.
CITIES = [(31.23, 121.47), (23.13, 113.26), (39.90, 116.40), (30.57, 104.07), (43.83, 87.62)]
GTIN = os.environ.get("LOADTEST_GTIN", "06901234000016")  # the Digital Link's /01/ (not checked)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value else default


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    return default if not value else value in ("1", "true", "yes", "on")


THRESHOLD = _env_int("TRACECODE_VERIFY_REPEAT_THRESHOLD", 5)
MAX_FAILURES = _env_int("TRACECODE_PIN_MAX_FAILURES", 5)
# Demo units are never shipped: with the flag on (the server's default) a genuine code is
# "suspicious: never_shipped". `make loadtest` turns it off; mirror the server's setting here.
NEVER_SHIPPED = _env_bool("TRACECODE_VERIFY_FLAG_NEVER_SHIPPED", True)


class Code:
    __slots__ = ("pin", "serial", "url")

    def __init__(self, serial: str, pin: str, url: str) -> None:
        self.serial, self.pin, self.url = serial, pin, url


class Pools:
    """The codes file split into disjoint pools, shared by every user of this process."""

    def __init__(self, codes: list[Code]) -> None:
        if len(codes) < 30:
            raise SystemExit(f"need at least 30 codes in the codes file, got {len(codes)}")
        wrong = WRONG_PIN_CODES
        self.copied = codes[:COPIED]
        self.wrong_pin = codes[COPIED : COPIED + wrong]
        self.genuine = codes[COPIED + wrong :]
        self._genuine = itertools.cycle(self.genuine)
        self._wrong = itertools.cycle(self.wrong_pin)
        self.scanned: list[Code] = []  # genuine codes queried at least once
        self.locked: list[Code] = []
        self.locked_serials: set[str] = set()
        self.outcomes: Counter[str] = Counter()

    def next_genuine(self) -> Code:
        code = next(self._genuine)
        if len(self.scanned) < 5000:
            self.scanned.append(code)
        else:
            self.scanned[random.randrange(5000)] = code
        return code

    def next_wrong(self) -> Code:
        return next(self._wrong)

    def lock(self, code: Code) -> None:
        if code.serial not in self.locked_serials:
            self.locked_serials.add(code.serial)
            self.locked.append(code)


POOLS: Pools | None = None


def load_codes(path: str) -> list[Code]:
    codes = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            parts = line.strip().split(",")
            if len(parts) >= 3 and parts[0] and parts[1].isdigit():
                codes.append(Code(parts[0], parts[1], parts[2]))
    return codes


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--codes",
        default=os.environ.get("LOADTEST_CODES", ""),
        help="file of serial,pin,url lines from `tracecode demo codes` (env LOADTEST_CODES)",
    )


@events.test_start.add_listener
def _load(environment: Environment, **_: Any) -> None:
    global POOLS
    path = environment.parsed_options.codes if environment.parsed_options else ""
    path = path or os.environ.get("LOADTEST_CODES", "")
    if not path:
        raise SystemExit("give the codes file: --codes FILE or LOADTEST_CODES=FILE")
    host = environment.host or Consumer.host or ""
    if not host.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        raise SystemExit(f"refusing to load {host!r}: load tests target this machine only")
    POOLS = Pools(load_codes(path))


@events.quitting.add_listener
def _summary(environment: Environment, **_: Any) -> None:
    if POOLS is None:
        return
    print("\nanswers by kind of code (kind result/reason: count):")
    for key, count in sorted(POOLS.outcomes.items()):
        print(f"  {key:<44} {count:>8}")
    copied = {k: v for k, v in POOLS.outcomes.items() if k.startswith("copied ")}
    suspicious = sum(v for k, v in copied.items() if " suspicious/" in k)
    if copied:
        print(f"copied codes answered suspicious: {suspicious} of {sum(copied.values())}")
    print(f"codes locked by wrong PINs: {len(POOLS.locked)}")


def pools() -> Pools:
    assert POOLS is not None, "the codes were not loaded"
    return POOLS


def _genuine_ok(answer: dict[str, Any], pin_given: bool, copied: bool = False) -> str | None:
    """Why the answer is wrong for a genuine code (None: it is right)."""
    result, reason, queries = answer.get("result"), answer.get("reason"), answer.get("queries", 0)
    if queries > THRESHOLD:
        expected = {("suspicious", "over_threshold")}
    elif not pin_given:
        expected = {("unconfirmed", "pin_required")}
    else:
        expected = {("genuine", "first_query" if queries == 1 else "repeat_query")}
        if copied and queries > 1:
            expected.add(("suspicious", "region_jump"))
    if NEVER_SHIPPED and queries <= THRESHOLD:
        expected.add(("suspicious", "never_shipped"))
    if (result, reason) in expected:
        return None
    return f"got {result}/{reason} with queries={queries}, expected one of {sorted(expected)}"


class Consumer(FastHttpUser):
    """A consumer (or a counterfeiter's customer) scanning one code per task."""

    host = os.environ.get("LOADTEST_URL") or None  # set by loadtests/stack.py; or --host
    wait_time = between(0.05, 0.5)

    def _verify(
        self, kind: str, body: dict[str, Any], check: Any, name: str | None = None
    ) -> dict[str, Any] | None:
        with self.client.post(
            "/v1/verify", json=body, name=name or f"verify {kind}", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"{kind}: HTTP {response.status_code}: {response.text[:200]}")
                return None
            try:
                answer: dict[str, Any] = response.json()
            except ValueError:
                response.failure(f"{kind}: the answer is not JSON")
                return None
            pools().outcomes[f"{kind} {answer.get('result')}/{answer.get('reason')}"] += 1
            problem = check(answer)
            if problem:
                response.failure(f"{kind}: {problem}")
            else:
                response.success()
            return answer

    @task(10)
    def genuine_with_pin(self) -> None:
        code = pools().next_genuine()
        self._verify(
            "genuine",
            {"serial": code.serial, "pin": code.pin, "lang": "en"},
            lambda a: _genuine_ok(a, pin_given=True),
        )

    @task(3)
    def repeat_with_pin(self) -> None:
        scanned = pools().scanned
        if not scanned:
            return
        code = random.choice(scanned)
        self._verify(
            "repeat",
            {"serial": code.serial, "pin": code.pin},
            lambda a: _genuine_ok(a, pin_given=True),
        )

    @task(2)
    def scan_without_pin(self) -> None:
        scanned = pools().scanned
        if not scanned:
            return
        code = random.choice(scanned)
        self._verify(
            "no-pin",
            {"serial": code.url or code.serial},
            lambda a: _genuine_ok(a, pin_given=False),
        )

    @task(3)
    def gs1_digital_link(self) -> None:
        code = pools().next_genuine()
        link = f"https://127.0.0.1/01/{GTIN}/21/{code.serial}"
        self._verify(
            "gs1-link",
            {"serial": link, "pin": code.pin},
            lambda a: _genuine_ok(a, pin_given=True),
        )

    @task(4)
    def copied_code(self) -> None:
        code = random.choice(pools().copied)
        lat, lng = random.choice(CITIES)
        body = {"serial": code.serial, "pin": code.pin, "gps": {"lat": lat, "lng": lng}}
        self._verify("copied", body, lambda a: _genuine_ok(a, pin_given=True, copied=True))

    @task(3)
    def forged_code(self) -> None:
        if random.random() < 0.5:  # a made-up serial that looks right
            serial = "".join(random.choice(CROCKFORD) for _ in range(20))
        else:  # a genuine serial with one symbol changed
            source = random.choice(pools().genuine).serial
            i = random.randrange(len(source))
            serial = source[:i] + random.choice(CROCKFORD.replace(source[i], "")) + source[i + 1 :]
        self._verify("forged", {"serial": serial}, _not_genuine("forged"))

    @task(1)
    def malformed_code(self) -> None:
        self._verify("malformed", {"serial": random.choice(MALFORMED)}, _not_genuine("malformed"))

    @task(2)
    def wrong_pin(self) -> None:
        p = pools()
        code = p.next_wrong()
        wrong = str((int(code.pin[0]) + 1) % 10) + code.pin[1:]

        def check(answer: dict[str, Any]) -> str | None:
            result = answer.get("result")
            if result == "locked":
                p.lock(code)
                return (
                    None if (answer.get("retry_after") or 0) > 0 else "locked without retry_after"
                )
            if result == "wrong_pin":
                left = answer.get("pin_attempts_left")
                if isinstance(left, int) and 1 <= left < MAX_FAILURES:
                    return None
                return f"wrong_pin with pin_attempts_left={left}"
            return f"got {result}/{answer.get('reason')}, expected wrong_pin or locked"

        self._verify("wrong-pin", {"serial": code.serial, "pin": wrong}, check)

    @task(1)
    def right_pin_on_locked_code(self) -> None:
        locked = pools().locked
        if not locked:
            return
        code = random.choice(locked)

        def check(answer: dict[str, Any]) -> str | None:
            if answer.get("result") == "locked":
                return None
            return f"a locked code answered {answer.get('result')} to its right PIN"

        self._verify("locked", {"serial": code.serial, "pin": code.pin}, check)


def _not_genuine(reason: str) -> Any:
    def check(answer: dict[str, Any]) -> str | None:
        if (answer.get("result"), answer.get("reason")) == ("not_genuine", reason):
            return None
        return f"got {answer.get('result')}/{answer.get('reason')}, expected not_genuine/{reason}"

    return check
