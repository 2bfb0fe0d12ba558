"""Settings from TRACECODE_* variables, with clear errors (issue: foundation)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.config import SettingsError, load_settings, redact_url, unknown_variables
from tests.servers import free_port

KEY = "ab" * 32


def test_defaults_and_values_from_the_environment() -> None:
    settings = load_settings({"TRACECODE_PORT": "9001", "TRACECODE_MASTER_KEY": KEY})
    assert settings.port == 9001
    assert settings.master_key_bytes() == bytes.fromhex(KEY)
    assert settings.database_url is None and settings.pin_length == 6
    assert len(settings.jwt_key()) == 32


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"TRACECODE_PORT": "eighty"}, "TRACECODE_PORT"),
        ({"TRACECODE_PORT": "70000"}, "TRACECODE_PORT"),
        ({"TRACECODE_PIN_LENGTH": "3"}, "TRACECODE_PIN_LENGTH"),
        ({"TRACECODE_GS1_COMPANY_PREFIX": "12AB"}, "TRACECODE_GS1_COMPANY_PREFIX"),
        ({"TRACECODE_GS1_COMPANY_PREFIX": "000000"}, "TRACECODE_GS1_COMPANY_PREFIX"),
        ({"TRACECODE_LOG_LEVEL": "LOUD"}, "TRACECODE_LOG_LEVEL"),
        (
            {"TRACECODE_CURRENT_KEY_VERSION": "3", "TRACECODE_KEY_VERSIONS": "1,2"},
            "TRACECODE_CURRENT_KEY_VERSION",
        ),
        ({"TRACECODE_KEY_VERSIONS": "one"}, "TRACECODE_KEY_VERSIONS"),
        ({"TRACECODE_DB_POOL_MIN": "50", "TRACECODE_DB_POOL_MAX": "10"}, "TRACECODE_DB_POOL_MIN"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings(env)


def test_an_all_zero_company_prefix_is_refused() -> None:
    """A probe: an organisation's company prefix of zeros only is refused (GS1 allocates none,
    and "000000" claimed every GTIN-8), but ``TRACECODE_GS1_COMPANY_PREFIX=000000`` (or any
    length of zeros) was taken. Now the start-up stops with the variable named and why."""
    for zeros in ("000000", "0000000", "000000000000"):
        with pytest.raises(SettingsError, match=f"GS1_COMPANY_PREFIX={zeros} is all zeros"):
            load_settings({"TRACECODE_GS1_COMPANY_PREFIX": zeros})
    for prefix in ("000001", "100000", "6901234"):
        assert load_settings({"TRACECODE_GS1_COMPANY_PREFIX": prefix}).gs1_company_prefix == prefix


def test_master_key_must_exist_and_be_32_bytes(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no master key"):
        load_settings({}).master_key_bytes()
    with pytest.raises(SettingsError, match="32 bytes"):
        load_settings({"TRACECODE_MASTER_KEY": "abcd"}).master_key_bytes()
    key_file = tmp_path / "master.key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)  # a secret file others may read is refused
    from_file = load_settings({"TRACECODE_MASTER_KEY_FILE": str(key_file)})
    assert from_file.master_key_bytes() == bytes.fromhex(KEY)
    with pytest.raises(SettingsError, match="cannot be read"):
        load_settings({"TRACECODE_MASTER_KEY_FILE": str(tmp_path / "missing")}).master_key_bytes()
    with pytest.raises(SettingsError, match="only one"):
        load_settings(
            {"TRACECODE_MASTER_KEY": KEY, "TRACECODE_MASTER_KEY_FILE": str(key_file)}
        ).master_key_bytes()


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o660, 0o602, 0o601, 0o666])
def test_a_secret_file_others_may_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    """A probe: the master key file was used whatever its mode — one readable by every user of
    the host (a ``cp`` under umask 022, a Kubernetes secret volume's default 0644) in silence,
    though the key decrypts every code's PIN and signs every token. As ssh and .pgpass do, a
    secret file others may read or write, or its group write, stops start-up naming the
    variable; so does the S3 secret's file."""
    key_file = tmp_path / "master.key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(mode)
    settings = load_settings({"TRACECODE_MASTER_KEY_FILE": str(key_file)})
    with pytest.raises(SettingsError, match="TRACECODE_MASTER_KEY_FILE") as refused:
        settings.check_serving()
    assert f"{mode:04o}" in str(refused.value) and KEY not in str(refused.value)
    s3 = {
        "TRACECODE_MEDIA_STORE": "s3",
        "TRACECODE_MEDIA_S3_ENDPOINT": "http://127.0.0.1:9000",
        "TRACECODE_MEDIA_S3_BUCKET": "photos",
        "TRACECODE_MEDIA_S3_ACCESS_KEY_ID": "tracecode",
        "TRACECODE_MEDIA_S3_SECRET_ACCESS_KEY_FILE": str(key_file),
    }
    with pytest.raises(SettingsError, match="TRACECODE_MEDIA_S3_SECRET_ACCESS_KEY_FILE"):
        load_settings(s3)


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640, 0o440])
def test_a_secret_file_of_its_owner_and_group_is_read(tmp_path: Path, mode: int) -> None:
    """The group may read a secret file (0440 or 0640: a Kubernetes ``fsGroup``, a service's
    group); only its owner may write it."""
    key_file = tmp_path / "master.key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(mode)
    settings = load_settings({"TRACECODE_MASTER_KEY_FILE": str(key_file)})
    assert settings.master_key_bytes() == bytes.fromhex(KEY)


def test_an_unpadded_url_safe_base64_master_key_is_read(tmp_path: Path) -> None:
    """A probe: ``parse_master_key`` takes base64 "standard or URL-safe" (README: "hex or
    base64"), but URL-safe base64 is written without its ``=`` padding almost everywhere it is
    made (``secrets.token_urlsafe(32)``, JWK/JOSE tooling): 43 characters holding exactly 32
    bytes. Such a key was refused ("must hold 32 bytes as 64 hex characters or base64")
    although it is base64 of 32 bytes; padded, the same key was taken."""
    import base64

    key = bytes(range(32))
    padded = base64.urlsafe_b64encode(key).decode()
    assert load_settings({"TRACECODE_MASTER_KEY": padded}).master_key_bytes() == key
    unpadded = padded.rstrip("=")
    assert len(unpadded) == 43
    assert load_settings({"TRACECODE_MASTER_KEY": unpadded}).master_key_bytes() == key
    path = tmp_path / "master.key"
    path.write_text(unpadded + "\n")
    path.chmod(0o600)  # a secret file others may read is refused
    assert load_settings({"TRACECODE_MASTER_KEY_FILE": str(path)}).master_key_bytes() == key
    # saved by Notepad (UTF-8 with a byte order mark): a probe, the right key refused
    path.write_text(key.hex() + "\r\n", encoding="utf-8-sig")
    assert load_settings({"TRACECODE_MASTER_KEY_FILE": str(path)}).master_key_bytes() == key
    for wrong in (unpadded[:-1], unpadded + "A", unpadded + "==", unpadded[:-2] + "!?"):
        with pytest.raises(SettingsError, match="32 bytes"):  # still 32 bytes of base64 only
            load_settings({"TRACECODE_MASTER_KEY": wrong}).master_key_bytes()


@pytest.mark.parametrize("versions", ["1,1", "1,2,3,4,5,6,7,8,9"])
def test_key_versions_the_core_refuses_stop_start_up_in_one_line(versions: str) -> None:
    """A probe: ``TRACECODE_KEY_VERSIONS=1,1`` (a version listed twice, e.g. a rollout's typo)
    or more than the core's 8 active versions passed ``load_settings`` and ``check_serving``,
    then the Rust core refused them when the scheme was built: the API (``create_app()``,
    granian's factory) died with a Python traceback ``ValueError: key version 1 is listed
    twice`` naming no variable, as did every CLI command that builds the scheme. README
    "Configuration": a bad value stops start-up with one line naming the variable, exit 2."""
    run = _run(
        sys.executable, "-c", "from app.main import create_app; create_app()",
        TRACECODE_KEY_VERSIONS=versions, TRACECODE_CURRENT_KEY_VERSION="1",
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert "Traceback" not in out, out[-1500:]
    assert "configuration error: TRACECODE_KEY_VERSIONS" in run.stderr, out[-1500:]
    assert run.returncode == 2


def test_the_settings_take_the_key_versions_the_core_takes() -> None:
    """The settings' rules are the core's (``check_versions``, ``core_rs/src/keys.rs``): 1 to
    ``MAX_KEY_VERSIONS`` distinct versions from 1 up, the current one among them."""
    from app.codes.scheme import load_scheme
    from app.config import MAX_KEY_VERSIONS

    most = ",".join(str(v) for v in range(MAX_KEY_VERSIONS, 0, -1))
    settings = load_settings({"TRACECODE_KEY_VERSIONS": most, "TRACECODE_MASTER_KEY": KEY})
    assert load_scheme(bytes(32), settings.active_key_versions, 1).versions
    with pytest.raises(ValueError):  # the core's own limit is the settings' one
        load_scheme(bytes(32), range(1, MAX_KEY_VERSIONS + 2), 1)
    for refused in ("2,1,2", f"{most},9", "0,1"):
        with pytest.raises(SettingsError, match="TRACECODE_KEY_VERSIONS"):
            load_settings({"TRACECODE_KEY_VERSIONS": refused})


def test_secrets_never_show_in_repr() -> None:
    settings = load_settings(
        {
            "TRACECODE_MASTER_KEY": KEY,
            "TRACECODE_DATABASE_URL": "postgresql://u:hunter2@h/db",
            "TRACECODE_JWT_SECRET": "j" * 40,
        }
    )
    text = repr(settings) + str(settings)
    assert KEY not in text and "hunter2" not in text and "j" * 40 not in text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:hunter2@h/db", "postgresql://u:***@h/db"),
        # probe N: a password holding an @, and one given as a query parameter
        ("amqp://u:hunt@er2@h:5672/vh", "amqp://u:***@h:5672/vh"),
        ("postgresql:///db?host=/tmp&user=u&password=hunter2", "postgresql:///db?host=/tmp&user=u&password=***"),
        ("postgresql://h/db?sslpassword=hunter2&application_name=x", "postgresql://h/db?sslpassword=***&application_name=x"),
        ("redis://:hunter2@a:6379/0;redis://:hunter2@b:6379/0", "redis://:***@a:6379/0;redis://:***@b:6379/0"),
        ("redis://a:6379/0", "redis://a:6379/0"),
        # probe S: a libpq key/value string, a quoted value with a blank and a quote in it
        ("host=h user=u password=hunter2 dbname=db", "host=h user=u password=*** dbname=db"),
        ("host=h password = 'hun ter\\'2' dbname=db", "host=h password = *** dbname=db"),
        ("sslpassword=hunter2 host=h", "sslpassword=*** host=h"),
    ],
)  # fmt: skip
def test_urls_are_shown_without_their_passwords(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_database_url_password_holding_a_semicolon_is_never_shown() -> None:
    """A probe: ``redact_url`` (``Settings.__repr__``, ``tracecode run``'s banner, ``tracecode
    services up``) stopped the user information at ``;`` (the AMQP list's separator), so a
    PostgreSQL or Redis URL whose password holds one — libpq and redis-py both take it — was
    shown whole, password included. Now masked; an AMQP list is still redacted URL by URL."""
    from psycopg.conninfo import conninfo_to_dict

    from app.config import Settings

    db = "postgresql://tracecode:Pa55;word-Secret@db.internal:5432/tracecode"
    replica = "postgresql://tracecode:Rep;lica-Secret@standby.internal/tracecode"
    assert conninfo_to_dict(db)["password"] == "Pa55;word-Secret"  # a URL libpq takes
    assert redact_url(db) == "postgresql://tracecode:***@db.internal:5432/tracecode"
    assert redact_url("redis://:Red;is-Secret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact_url("postgresql://h/db?password=a;b&x=1") == "postgresql://h/db?password=***&x=1"
    shown = repr(Settings(database_url=db, database_replica_url=replica))
    assert "Secret" not in shown and "tracecode:***@standby.internal" in shown
    amqp = "amqp://u:p1@h1:5672;amqp://h2:5672/vh;amqp://v:p;2@h3/vh"
    assert redact_url(amqp) == "amqp://u:***@h1:5672;amqp://h2:5672/vh;amqp://v:***@h3/vh"


def test_app_refuses_to_start_without_a_master_key() -> None:
    from app.main import create_app

    with pytest.raises(SettingsError, match="no master key"):
        create_app(load_settings({}))


def test_a_variable_that_names_no_setting_is_reported() -> None:
    """Probe V: ``TRACECODE_DB_URL`` (for ``TRACECODE_DATABASE_URL``) was ignored in silence,
    and the service ran on the embedded database."""
    env = {
        "TRACECODE_DB_URL": "postgresql://db.internal/tracecode",
        "TRACECODE_DATABASE_URL": "postgresql://db.internal/tracecode",
        "TRACECODE_API_PASSWORD": "the CLI's, not a setting",
        "OTHER_DB_URL": "not ours",
    }
    assert unknown_variables(env) == ["TRACECODE_DB_URL"]
    run = subprocess.run(
        [sys.executable, "-m", "app.cli", "openapi"],
        env={**os.environ, "TRACECODE_MASTER_KEY": KEY, "TRACECODE_DB_URL": "x"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "warning: TRACECODE_DB_URL is not a setting of Tracecode: ignored" in run.stderr
    assert json.loads(run.stdout)["openapi"]  # stdout stays the document


def _run(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``argv`` run to its end, in a process group of its own: one still running after 120 s
    is killed with its children (a dramatiq host's worker processes outlived a timeout and
    worked on in the test database, under the later tests)."""
    with subprocess.Popen(
        argv,
        env={**os.environ, "TRACECODE_MASTER_KEY": "ab" * 32, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            out, err = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            raise AssertionError(f"still running after 120 s: {(out + err)[-2000:]}") from None
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "postgress://u:s3cretpw@127.0.0.1:5432/db"),
        ("DATABASE_URL", "   "),
        ("DATABASE_REPLICA_URL", "host=127.0.0.1 password=s3cretpw dbname"),
        ("REDIS_URL", "http://127.0.0.1:6379/0"),
        ("REDIS_URL", "redis://:s3cretpw@127.0.0.1:notaport/0"),
    ],
)
def test_a_malformed_server_url_is_one_line_naming_it_without_its_password(
    variable: str, value: str
) -> None:
    """Probes: libpq quoted a mistyped URL whole, password included, in the CLI's error and the
    API's start-up traceback; a malformed Redis URL failed every entry point with a traceback
    naming no variable; a blank database URL connected with libpq's defaults."""
    with pytest.raises(SettingsError, match=f"TRACECODE_{variable}") as refused:
        load_settings({f"TRACECODE_{variable}": value})
    assert "s3cretpw" not in str(refused.value)
    run = _run(sys.executable, "-m", "app.cli", "openapi", **{f"TRACECODE_{variable}": value})
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert f"TRACECODE_{variable}" in run.stderr and "s3cretpw" not in run.stderr + run.stdout


def test_settings_that_contradict_each_other_or_are_out_of_range_are_refused() -> None:
    """Probes: an SMS lease shorter than the gateway's timeout (rows sent twice), a back-off
    above its maximum, a resolver port past 65535 (printed on codes for years), and a variable
    warned as ignored that was used, over the right one."""
    for env, name in (
        ({"TRACECODE_SMS_LEASE_SECONDS": "2", "TRACECODE_SMS_GATEWAY_TIMEOUT": "100"}, "SMS_LEASE"),
        (
            {"TRACECODE_SMS_BACKOFF_SECONDS": "100", "TRACECODE_SMS_BACKOFF_MAX_SECONDS": "10"},
            "SMS_BACKOFF_SECONDS",
        ),
        (
            {
                "TRACECODE_WEBHOOK_BACKOFF_SECONDS": "100",
                "TRACECODE_WEBHOOK_BACKOFF_MAX_SECONDS": "10",
            },
            "WEBHOOK_BACKOFF_SECONDS",
        ),
        ({"TRACECODE_RESOLVER_HOST": "verify.example.com:99999"}, "RESOLVER_HOST"),
        ({"TRACECODE_RESOLVER_HOST": "verify.example.com:0"}, "RESOLVER_HOST"),
    ):
        with pytest.raises(SettingsError, match=name):
            load_settings(env)
    assert load_settings({"TRACECODE_RESOLVER_HOST": "verify.example.com:8443"}).resolver_host
    env = {"TRACECODE_PORT": "8000", "TRACECODE_port": "9001"}
    assert unknown_variables(env) == ["TRACECODE_port"]
    assert load_settings(env).port == 8000


@pytest.mark.parametrize(
    "value",
    [
        "otp:SMS_1,redemption:SMS_2",
        "otp=SMS_1,redemption",
        "otp=SMS_1,",
        "otp=",
        "=SMS_1",
        "login=SMS_1",
        "otp=SMS_1,otp=SMS_2",
    ],
)
def test_a_malformed_sms_template_ids_setting_stops_start_up(value: str) -> None:
    """A probe: README "Configuration" says a bad value stops start-up naming the variable, but
    `TRACECODE_SMS_TEMPLATE_IDS` written with the wrong separator (`otp:SMS_1,redemption:SMS_2`)
    was taken, and `app.sms.gateway.template_ids` dropped every part without `=` in silence:
    every SMS went to the gateway with no provider template id. Each part is `name=id` now, the
    name a built-in template's, given once."""
    with pytest.raises(SettingsError, match="TRACECODE_SMS_TEMPLATE_IDS"):
        load_settings({"TRACECODE_SMS_TEMPLATE_IDS": value})


def test_the_sms_template_ids_setting_maps_the_built_in_templates() -> None:
    from app.config import SMS_TEMPLATES
    from app.sms.gateway import template_ids
    from app.sms.templates import BUILTIN

    assert set(SMS_TEMPLATES) == set(BUILTIN)  # the names settings check are the SMS code's
    settings = load_settings(
        {"TRACECODE_SMS_TEMPLATE_IDS": "otp=SMS_1, redemption = SMS_2,reminder=SMS_3"}
    )
    assert template_ids(settings) == {"otp": "SMS_1", "redemption": "SMS_2", "reminder": "SMS_3"}
    assert template_ids(load_settings({})) == {}


def test_the_worker_with_a_bad_setting_says_one_line() -> None:
    """A probe: the worker host's command printed a traceback."""
    run = _run(
        sys.executable, "-m", "dramatiq", "workers.main", "--processes", "1", "--threads", "1",
        TRACECODE_PORT="abc",
    )  # fmt: skip
    assert run.returncode != 0
    assert "Traceback" not in run.stderr, run.stderr
    assert "configuration error: TRACECODE_PORT" in run.stderr


BAD_KEY = "58e9be44f7d8cd647b05d48c9c2bfa4f08aa8724be5cfadaf6d5645885005c2"  # 63 hex digits


@pytest.mark.parametrize(
    "command",
    [
        ["dramatiq", "workers.main", "--processes", "1", "--threads", "1"],
        ["granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1", "--workers", "1"],
    ],
    ids=["worker", "api"],
)  # fmt: skip
def test_a_malformed_master_key_stops_the_worker_and_the_api_in_one_line(
    command: list[str], tmp_path: Path
) -> None:
    """A probe: with a mistyped TRACECODE_MASTER_KEY (63 hex digits) the worker host
    (`python -m dramatiq workers.main`) and the API server (granian on `app.main:create_app`)
    died with a 30-line traceback, exit 1, while any other bad setting is one line, exit 2
    (README "Configuration"): `check_serving()` raised outside the one-line handler."""
    if command[0] == "granian":
        command = [*command, "--port", str(free_port()), "app.main:create_app"]
    run = _run(
        sys.executable, "-m", *command,
        TRACECODE_MASTER_KEY=BAD_KEY,
        TRACECODE_VAR_DIR=str(tmp_path / "var"),
        TRACECODE_REDIS_NAMESPACE="probesecrets",
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert BAD_KEY not in out  # the value is never echoed
    assert "configuration error: TRACECODE_MASTER_KEY" in run.stderr, out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    assert run.returncode != 0


def test_a_redis_url_option_no_connection_takes_is_refused_by_the_settings() -> None:
    """A probe: `parse_url` passes an option it does not know on to the connection, so a typo
    (`?socket_timout=5`) or a TLS option on `redis://` passed the settings and failed every
    entry point at the first connection; a cluster URL's options were dropped in silence."""
    for url in (
        "redis://127.0.0.1:6379/0?socket_timout=5",
        "redis://127.0.0.1:6379/0?ssl_cert_reqs=none",
        "unix:///tmp/r.sock?ssl_cert_reqs=none",
        "redis+cluster://r1:7000,r2:7001?socket_timeout=5",
    ):
        env = {"TRACECODE_REDIS_URL": url, "TRACECODE_BROKER_URL": "amqp://u:p@rabbit/tc"}
        with pytest.raises(SettingsError, match="TRACECODE_REDIS_URL"):
            load_settings(env)
    for url in (
        "rediss://127.0.0.1:6380/0?ssl_cert_reqs=none&ssl_ca_certs=/etc/ca.pem",
        "redis://127.0.0.1:6379/0?socket_timeout=5&health_check_interval=10&max_connections=50",
        "unix:///tmp/r.sock?db=1&client_name=tracecode",
    ):
        assert load_settings({"TRACECODE_REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/abc",  # a database that is no number: database 0 was used
        "redis://127.0.0.1:6379/1/2",  # read as database 12
        "redis://127.0.0.1:6379/-1",  # refused only at the first connection
        "unix:///tmp/r.sock?db=-1",
    ],
)
def test_a_redis_url_whose_database_is_no_number_is_refused(url: str) -> None:
    """A probe: redis-py's ``parse_url`` drops a database path that is no number in silence —
    the app then ran on database 0, another deployment's on a shared Redis — and read ``/1/2``
    as database 12. The settings take ``/N`` or ``?db=N`` only, naming the variable."""
    with pytest.raises(SettingsError, match="TRACECODE_REDIS_URL"):
        load_settings({"TRACECODE_REDIS_URL": url})
    for good in (
        "redis://127.0.0.1:6379/15",
        "redis://127.0.0.1:6379/",
        "redis://h:6379/0/",
        "rediss://h:6380/3?db=3",
    ):
        assert load_settings({"TRACECODE_REDIS_URL": good}).redis_url == good


def test_server_urls_in_every_valid_form_are_taken_and_the_refusals_say_why() -> None:
    """A probe of the URL checks: a libpq string whose value holds "://" was refused as a URL
    of another scheme; an upper-case cluster scheme passed the checks and then failed the
    worker; a password's unencoded "#" was blamed on the port."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    encoded = conninfo_to_dict("postgresql://u:ab%3A%2F%2Fcd@127.0.0.1:5432/db")
    for url in (
        "host=127.0.0.1 user=postgres dbname=postgres password='ab://cd'",
        "host=127.0.0.1 dbname=postgres options='-c app.origin=https://x.example'",
        make_conninfo("", **encoded),
        "postgresql://u:p%40ss@[::1]:5432/db",
        "postgresql:///db?host=/var/run/postgresql",
        "postgres://h1:5432,h2:5432/db?target_session_attrs=read-write",
    ):
        assert load_settings({"TRACECODE_DATABASE_URL": url}).database_url == url
    for url in ("redis://:p%40ss@[::1]:6379/0", "rediss://h:6380", "unix:///tmp/r.sock?db=1"):
        assert load_settings({"TRACECODE_REDIS_URL": url}).redis_url == url
    for variable, url, says in (
        ("DATABASE_URL", "POSTGRESQL://u@127.0.0.1/db", "lower case"),
        ("REDIS_URL", "REDIS+CLUSTER://127.0.0.1:6379", "lower case"),
        ("REDIS_URL", "redis://:pa#ss@127.0.0.1:6379/0", "percent-encoded"),
        ("REDIS_URL", "redis://[::1/0", "no valid URL"),
    ):
        with pytest.raises(SettingsError, match=says):
            load_settings({f"TRACECODE_{variable}": url})


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://redis-1",  # no port
        "redis+cluster://",  # no node at all
        "redis+cluster://redis-1:6379/2",  # a cluster has only database 0
        "redis+cluster://redis-1:99999",  # no such port
    ],
)
def test_a_malformed_redis_cluster_url_is_refused_by_the_settings(url: str) -> None:
    """A probe: a malformed cluster URL passed the settings, and the API server and the
    worker died at import with a traceback instead of the one-line configuration error."""
    env = {"TRACECODE_REDIS_URL": url, "TRACECODE_BROKER_URL": "amqp://u:p@rabbit:5672/tc"}
    with pytest.raises(SettingsError, match="TRACECODE_REDIS_URL"):
        load_settings(env)


@pytest.mark.parametrize(
    "url",
    [
        "amqp://guest:guest@rabbit:notaport/tc",
        "amqp://guest:guest@rabbit:99999/tc",
        "amqp://guest:guest@rabbit:5672/tc?heartbeat=abc",
        "amqp://guest:guest@rabbit:5672/tc;amqp://guest:guest@rabbit-2:0x/tc",
    ],
)
def test_a_malformed_broker_url_is_refused_by_the_settings(url: str) -> None:
    """A probe: the same for TRACECODE_BROKER_URL (pika's parser refused it only when the broker
    was built, at import, after ``tracecode run``'s checks had passed)."""
    with pytest.raises(SettingsError, match="TRACECODE_BROKER_URL"):
        load_settings({"TRACECODE_BROKER_URL": url})


def test_well_formed_cluster_and_broker_urls_pass_the_settings() -> None:
    settings = load_settings(
        {
            "TRACECODE_REDIS_URL": "redis+cluster://r1:7000,r2:7001",
            "TRACECODE_BROKER_URL": "amqp://u:p@rabbit:5672/tc;amqps://u:p@rabbit-2/tc?heartbeat=30",
        }
    )
    assert settings.broker_url and settings.redis_url


def test_a_broker_url_with_a_malformed_option_value_is_a_settings_error() -> None:
    """A regression probe: an operator's typo in an option pika reads as a Python
    literal (``tcp_options``, ``ssl_options``, ``client_properties``) must be a SettingsError
    naming TRACECODE_BROKER_URL, like a bad port or heartbeat is — not a SyntaxError traceback
    out of ``load_settings``."""
    key = "00" * 32
    for option in ("tcp_options=%7B'TCP_KEEPIDLE':60", "ssl_options=%7B", "client_properties=("):
        url = f"amqp://tracecode:secret@rabbitmq:5672/tracecode?{option}"
        with pytest.raises(SettingsError, match="TRACECODE_BROKER_URL"):
            load_settings({"TRACECODE_MASTER_KEY": key, "TRACECODE_BROKER_URL": url})


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://tracecode:s3cretpw@127.0.0.1:abc/tracecode", "port"),
        ("postgresql://tracecode:s3cretpw@127.0.0.1:99999/tracecode", "port"),
        ("postgresql://tracecode:s3cretpw@127.0.0.1:0/tracecode", "port"),
        ("postgresql://tracecode:s3cretpw@h1:5432,h2:x/tracecode", "port"),
        ("host=h1,h2 port=5432,5433,5434 password=s3cretpw dbname=tracecode", "3 ports for 2"),
        ("postgresql://tracecode:s3cretpw@db/tracecode?connect_timeout=abc", "connect_timeout"),
        ("postgresql://tracecode:s3cretpw@db/tracecode?sslmode=required", "sslmode"),
    ],
)
def test_a_postgres_url_with_a_bad_port_or_option_is_a_configuration_error_naming_it(
    url: str, says: str
) -> None:
    """A probe: README "Configuration" says a server URL is checked for its port and options,
    a bad one stopping start-up with one line naming the variable; ``TRACECODE_DATABASE_URL``
    with a port that is no number, or past 65535, passed ``load_settings``
    (``_check_postgres_url`` only asked ``conninfo_to_dict``, which does not read the port):
    the API server died in its lifespan with a 40-line ``psycopg.OperationalError`` traceback,
    the CLI's line named no variable. The same for a ``connect_timeout`` or ``sslmode`` libpq
    or psycopg refuse only when connecting. The password is never echoed."""
    for variable in ("TRACECODE_DATABASE_URL", "TRACECODE_DATABASE_REPLICA_URL"):
        with pytest.raises(SettingsError, match=variable) as refused:
            load_settings({variable: url})
        assert says in str(refused.value) and "s3cretpw" not in str(refused.value)
    for good in (
        "postgresql://u@db:6432/tracecode?connect_timeout=10&sslmode=verify-full",
        "postgresql://u@h1,h2:5433/tracecode",  # the first host on the default port
        "host=h1,h2 port=5432,5433 dbname=tracecode",
    ):
        assert load_settings({"TRACECODE_DATABASE_URL": good}).database_url == good


OTHER_KEY = "6b" * 32


async def test_a_restart_under_another_master_key_is_refused_before_it_serves(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: an API host restarted with another master key (a secret store serving a new
    value, another environment's env file, a worker host given the ``var/master.key`` of
    ``tracecode run``) started without a word over a database of batches issued, printed and
    activated under the old key, and every code on the shelves then answered ``not_genuine``.
    The database keeps a check value of its key now (``app.codes.keycheck``): the API (in
    process, and granian's factory in one line), the CLI's commands that make codes, and the
    workers refuse another key, naming the variables and never the key; the codes stay genuine."""
    import msgspec

    from app.main import create_app
    from tests.helpers import activate, issue_units, scheme_for_tests, served

    batch_no, product_id = await issue_units(client, login, demo, 2)
    serial = scheme_for_tests().serial(batch_no, 0)
    await activate(client, login, [serial], product_id, line="KEY1")
    other = msgspec.structs.replace(app.state.settings, master_key=OTHER_KEY)
    with pytest.raises(ExceptionGroup) as refused:  # the lifespan's, as the server sees it
        async with served(create_app(other)):
            pass
    assert refused.group_contains(SettingsError, match="TRACECODE_MASTER_KEY_FILE")
    assert not refused.group_contains(Exception, match=OTHER_KEY)
    for argv in (
        ("-c", "from app.main import create_app; create_app()"),  # granian's factory
        ("-m", "app.cli", "codes", "list"),
    ):
        run = _run(sys.executable, *argv, TRACECODE_MASTER_KEY=OTHER_KEY)
        out = run.stdout + run.stderr
        assert run.returncode == 2 and "Traceback" not in out, out[-2000:]
        assert "configuration error: the master key (TRACECODE_MASTER_KEY" in run.stderr, out
        assert OTHER_KEY not in out
    answer = await client.post("/v1/verify", json={"serial": serial, "lang": "en"})
    assert answer.json()["result"] != "not_genuine", answer.text


def test_a_worker_under_another_master_key_stops_as_it_boots(client: Any) -> None:
    """The worker host of the probe above (``dramatiq workers.main``): each worker process
    compares its key as it boots, and stops in one line. ``client``: the database migrated and
    its key recorded by the API's start (with ``app`` alone, the first test of an xdist worker
    found no tables, the worker booted with a warning and ran on after the timeout, rolling up
    the later tests' stock deltas and taking their SMS)."""
    run = _run(
        sys.executable, "-m", "dramatiq", "workers.main", "--processes", "1", "--threads", "1",
        TRACECODE_MASTER_KEY=OTHER_KEY,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 2, out[-2000:]
    assert "configuration error: the master key (TRACECODE_MASTER_KEY" in run.stderr, out[-2000:]
    assert OTHER_KEY not in out
