"""The one settings object, read from ``TRACECODE_*`` environment variables."""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import msgspec

PREFIX = "TRACECODE_"
# One AMQP URL, or several (the nodes of a RabbitMQ cluster, tried in turn) joined by ";".
_AMQP_URLS = r"^amqps?://[^;\s]+(;amqps?://[^;\s]+)*\Z"
# TRACECODE_REDIS_URL of a Redis Cluster (app/redisconn.py): redis+cluster://host:port[,host:port…]
REDIS_CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


# The largest TRACECODE_MEDIA_MAX_BYTES taken: the photo route's own body limit (above it, a
# body is refused before the setting is asked; a probe: 12 MB photos failed at Litestar's 10 MB
# default while the setting took 100 MB).
MEDIA_MAX_BYTES_CAP = 16 * 1024 * 1024
# The largest TRACECODE_CATALOG_VIDEO_MAX_BYTES taken: the catalogue upload route's own body limit
# (an upload is held in memory while it is checked and stored, as a photo).
CATALOG_MEDIA_MAX_BYTES_CAP = 200 * 1024 * 1024


#: The built-in SMS templates (``app.sms.templates.BUILTIN``; tests/test_config.py ties the two):
#: the names ``TRACECODE_SMS_TEMPLATE_IDS`` may map. Spelled here, as settings never import a
#: domain (``app.sms`` loads its routes, and they load ``app.db``, which imports this module).
SMS_TEMPLATES = ("otp", "redemption", "reminder")


#: The most key versions active at once: the Rust core's ``MAX_VERSIONS`` (``core_rs/src/keys.rs``:
#: each verification tries each of them).
MAX_KEY_VERSIONS = 8


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""


@contextmanager
def one_line_errors() -> Iterator[None]:
    """A ``SettingsError`` inside as README "Configuration" promises: the one line
    ``tracecode: configuration error: …`` on stderr and exit code 2 — for the entry points that
    another program imports (the worker's ``dramatiq workers.main``, granian's
    ``app.main:create_app``), where it was a traceback through that program's machinery (a
    probe: a mistyped master key). An embedded server under ``var/`` that did not start
    (``app.embedded.ServiceError``) is one line too, ``tracecode: …`` naming its log, as the
    CLI prints it."""
    from app.embedded import ServiceError

    try:
        yield
    except SettingsError as exc:
        sys.stderr.write(f"tracecode: configuration error: {exc}\n")
        raise SystemExit(2) from None
    except ServiceError as exc:
        sys.stderr.write(f"tracecode: {exc}\n")
        raise SystemExit(2) from None


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    # Servers: None means "start the embedded PostgreSQL / Redis under var_dir".
    database_url: str | None = None
    # One server (redis://, rediss://, unix://) or a Redis Cluster (redis+cluster://host:port
    # [,host:port…]; the jobs then need TRACECODE_BROKER_URL: app/redisconn.py).
    redis_url: str | None = None
    # The job broker (app/jobs.py): None, dramatiq on the Redis above; an AMQP URL
    # (amqp://user:password@host:5672/vhost, amqps:// for TLS; several nodes of a cluster joined
    # by ";"), dramatiq on RabbitMQ. It may hold a password: it is never logged or printed.
    broker_url: Annotated[str, msgspec.Meta(pattern=_AMQP_URLS)] | None = None
    var_dir: str = "var"
    db_pool_min: Annotated[int, msgspec.Meta(ge=1, le=100)] = 2
    db_pool_max: Annotated[int, msgspec.Meta(ge=1, le=500)] = 20
    # Fail fast while PostgreSQL is down (app/db.py): seconds a request waits for a pooled
    # connection before 503, and seconds a connection attempt may take.
    db_pool_timeout: Annotated[float, msgspec.Meta(gt=0, le=300)] = 5.0
    db_connect_timeout: Annotated[int, msgspec.Meta(ge=1, le=60)] = 3
    # The API's pooled connections (app/db.py): seconds a statement may run before PostgreSQL
    # cancels it (503 query_timeout), and a transaction may sit idle before PostgreSQL ends the
    # session (off by default: a streamed export idles while a slow client reads); 0 sets no
    # limit. Workers, the CLI and migrations are not limited.
    db_statement_timeout: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 60.0
    db_idle_in_transaction_timeout: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 0.0
    # The hot paths' rounds (a verification's or a claim's query, on connections of their own:
    # app/verify/service.py, app/claims.py): every request of the process waits behind a round,
    # so its statement is cancelled after this many seconds (503 query_timeout), and a
    # verification round whose server does not answer at all is given up a second later (503
    # service_unavailable; probe Z: a lock held 80 s held every verification 78 s).
    db_round_timeout: Annotated[float, msgspec.Meta(gt=0, le=600)] = 5.0
    # A read replica (app/replica.py): a streaming standby of the primary, serving the reads that
    # tolerate a short lag (trace, management center, analytics, list reads, EPCIS query) with a
    # pool of the same size. It may hold a password: it is never logged or printed. A standby
    # further behind than MAX_LAG (or down) is not used; a caller who changed something reads
    # from the primary for STICKY seconds after (read-your-writes; at least MAX_LAG).
    database_replica_url: str | None = None
    replica_max_lag_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 5.0
    replica_sticky_seconds: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 10.0
    redis_namespace: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,40}(?!\n)$")] = (
        "tracecode"
    )
    # The API's Redis: seconds one command may take before it counts as failed; on a Redis
    # Cluster, seconds a shard whose master cannot answer (a failover under way, a stalled
    # master) is tried again before its verifications are answered from PostgreSQL
    # (app/verify/shardcalls.py). Tried again, a script call is never counted twice.
    redis_timeout: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0
    # A single Redis that timed out a verification round (it hangs) is not asked again by the
    # rounds until it answers a PING, sent this many seconds apart (0: every round asks it, each
    # waiting redis_timeout while it hangs). Meanwhile verifications come from PostgreSQL.
    redis_retry_after: Annotated[float, msgspec.Meta(ge=0, le=60)] = 1.0
    redis_failover_wait: Annotated[float, msgspec.Meta(ge=0, le=120)] = 5.0
    # A worker process silent this long is dead: the jobs it had taken are queued again
    # (dramatiq's heartbeat timeout, app/jobs.py). Live workers beat about every second.
    job_requeue_seconds: Annotated[int, msgspec.Meta(ge=2, le=3600)] = 30

    # Secrets: the master key comes from the environment or a key file, never the database.
    master_key: str | None = None
    master_key_file: str | None = None
    jwt_secret: str | None = None
    key_versions: str = "1"
    current_key_version: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 1
    pin_length: Annotated[int, msgspec.Meta(ge=4, le=10)] = 6

    # GS1 and public URLs.
    gs1_company_prefix: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6,12}(?!\n)$")] = "6901234"
    # Public URLs (QR codes, resolver redirects, linksets) are built from these two only, never
    # from a request's Host header. Production: https and the resolver's public host name.
    resolver_host: Annotated[
        str,
        msgspec.Meta(
            max_length=200, pattern=r"^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?\Z"
        ),
    ] = "127.0.0.1:8000"
    public_scheme: Annotated[str, msgspec.Meta(pattern=r"^https?\Z")] = "http"

    # Code issuance: where export files are written, and from which size an export is a job.
    export_dir: str | None = None
    export_async_threshold: Annotated[int, msgspec.Meta(ge=0)] = 1_000_000
    # Serial allocation: the most codes one allocation may ask for.
    allocation_max: Annotated[int, msgspec.Meta(ge=1, le=1 << 32)] = 100_000_000
    # EPCIS capture: documents of up to this many events are applied during the request (the
    # answer is still 202 with the finished job); larger ones are worker jobs.
    epcis_inline_events: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 1000

    # Consumer verification (SPEC V2, V4).
    # per client per minute; a client is an IPv4 address or an IPv6 /64 (``client_bucket``)
    verify_rate_limit: Annotated[int, msgspec.Meta(ge=1)] = 120
    # B2B verification (SPEC B8, ``/v1/lms/verify``): per caller (API key or user) per minute
    lms_rate_limit: Annotated[int, msgspec.Meta(ge=1)] = 600
    pin_max_failures: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5  # of one code
    pin_lockout_seconds: Annotated[int, msgspec.Meta(ge=1, le=86400)] = 900
    # Wrong PINs of one client over all codes within ``pin_lockout_seconds`` (from its first)
    # after which its PIN checks answer ``locked`` (``client_locked``) for ``pin_lockout_seconds``
    # (SPEC V2: one guesser spreading guesses over many codes, below each code's lockout). A
    # family checking its purchases never comes near 20; a shared address (a carrier's NAT)
    # shares the count.
    pin_client_max_failures: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 20
    verify_repeat_threshold: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5
    verify_flag_never_shipped: bool = True
    ip_regions_file: str | None = None

    # HTTP server.
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8000
    http_workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    # `tracecode run` starts the API server under SCHED_BATCH (``app.cli.batch_scheduling``):
    # for API processes with cores of their own, not sharing them with PostgreSQL.
    sched_batch: bool = False

    # Auth.
    access_token_ttl: Annotated[int, msgspec.Meta(ge=30, le=86400)] = 900
    refresh_token_ttl: Annotated[int, msgspec.Meta(ge=300, le=90 * 86400)] = 14 * 86400
    member_token_ttl: Annotated[int, msgspec.Meta(ge=300, le=90 * 86400)] = 30 * 86400
    # Member sign-up and log-in by SMS one-time code (app.members.auth): a code lives this long
    # and dies after this many wrong tries; one client IP may ask for this many codes per window
    # (each sends an SMS; the per-phone throttle is the SMS outbox's). Failed member log-ins
    # count on the login_* limits below, on counters of their own; a phone locks for an address
    # after three times member_otp_max_tries wrong codes (app.members.limits).
    member_otp_ttl: Annotated[int, msgspec.Meta(ge=60, le=3600)] = 300
    member_otp_max_tries: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5
    member_otp_ip_max: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 20
    member_otp_ip_window_seconds: Annotated[int, msgspec.Meta(ge=1, le=86400)] = 3600
    # WeChat sign-ins one client IP may start per member_otp_ip_window_seconds (each keeps an
    # OAuth state in Redis for minutes; a carrier's NAT puts many phones behind one address)
    member_wechat_ip_max: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 600
    login_max_failures: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5
    login_lockout_seconds: Annotated[int, msgspec.Meta(ge=1, le=86400)] = 900
    # Failed logins per client IP over all accounts, and per account over all IPs (app.auth.limits).
    login_ip_max_failures: Annotated[int, msgspec.Meta(ge=1, le=100000)] = 20
    login_ip_window_seconds: Annotated[int, msgspec.Meta(ge=1, le=86400)] = 300
    login_account_max_failures: Annotated[int, msgspec.Meta(ge=1, le=100000)] = 100

    # SMS (I2, app/sms/): the gateway, the sender's retries, throttling and marketing limits.
    # "dev" writes messages to the log (phone masked) and to var/sms/messages.jsonl; "http" posts
    # them to SMS_GATEWAY_URL (README "SMS" gives the protocol).
    sms_gateway: Literal["dev", "http"] = "dev"
    sms_gateway_url: Annotated[str, msgspec.Meta(pattern=r"^https?://")] | None = None
    sms_gateway_key: str | None = None  # the account (access key id), sent as HTTP Basic user
    sms_gateway_secret: str | None = None  # its secret, the HTTP Basic password
    sms_gateway_timeout: Annotated[float, msgspec.Meta(gt=0, le=120)] = 5.0
    sms_gateway_batch: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50  # messages per request
    sms_concurrency: Annotated[int, msgspec.Meta(ge=1, le=256)] = 8  # requests in flight
    # Our template names to the provider's template ids: "otp=SMS_1,redemption=SMS_2".
    sms_template_ids: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    # The signature put before every text, e.g. 【品牌】; unset: the brand's name in 【】.
    sms_signature: Annotated[str, msgspec.Meta(max_length=40)] | None = None
    # Delivery-status and reply callbacks are signed with this (HMAC-SHA256); unset: refused.
    sms_callback_secret: str | None = None
    sms_max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 8
    sms_backoff_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 2.0  # doubles per try
    sms_backoff_max_seconds: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 600.0
    # A row claimed this long ago without an outcome was taken by a sender that died; it must
    # outlast the longest claim (``sms_claim_seconds``: 35 s with the defaults) by over 5 s.
    sms_lease_seconds: Annotated[int, msgspec.Meta(ge=2, le=3600)] = 60
    # true: such a row is sent again with the same idempotency key (at least once to the
    # gateway, once to the phone when the gateway deduplicates); false: it is failed and
    # dead-lettered instead (at most once).
    sms_resend_unconfirmed: bool = True
    sms_sweep_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 2.0
    sms_otp_interval_seconds: Annotated[int, msgspec.Meta(ge=0, le=86400)] = 60
    sms_otp_daily_limit: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 10
    # Marketing (reminders, campaigns): at most one per phone and brand in this many hours,
    # a brand's campaigns sent at most this many messages per second in all, a member reminded
    # once per period.
    sms_marketing_interval_hours: Annotated[int, msgspec.Meta(ge=0, le=8760)] = 24
    sms_campaign_rate: Annotated[int, msgspec.Meta(ge=1, le=100000)] = 200
    sms_reminder_period_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 30

    # Webhooks (I1, app/webhooks/): partners' endpoints. Loopback, private, link-local and other
    # non-public addresses are refused (at subscription and at every attempt) unless this is set
    # (local receivers in tests and development).
    webhook_allow_private: bool = False
    webhook_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 10.0  # per attempt
    webhook_max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10  # then dead-lettered
    webhook_backoff_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 5.0  # doubles per try
    webhook_backoff_max_seconds: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 3600.0
    webhook_sweep_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 1.0
    webhook_concurrency: Annotated[int, msgspec.Meta(ge=1, le=256)] = 16  # requests in flight
    # A delivery claimed this long ago without an outcome: its sender died; it is sent again.
    webhook_lease_seconds: Annotated[int, msgspec.Meta(ge=2, le=3600)] = 120
    # After a secret is rotated, the old one still signs (beside the new) this long by default.
    webhook_rotation_overlap_seconds: Annotated[int, msgspec.Meta(ge=0, le=30 * 86400)] = 86400

    # WeChat service accounts (W5, app/wechat/): where WeChat's API and OAuth pages are (a test
    # points them at a local fake), how long one call may take, and the template messages'
    # sender (retries with back-off, then dead; a lease as the SMS sender's).
    wechat_api_url: Annotated[str, msgspec.Meta(pattern=r"^https?://[^?#\s]+\Z")] = (
        "https://api.weixin.qq.com"
    )
    wechat_open_url: Annotated[str, msgspec.Meta(pattern=r"^https?://[^?#\s]+\Z")] = (
        "https://open.weixin.qq.com"
    )
    wechat_timeout: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0
    wechat_max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 8
    wechat_backoff_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 5.0  # doubles per try
    wechat_backoff_max_seconds: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 1800.0
    wechat_lease_seconds: Annotated[int, msgspec.Meta(ge=2, le=3600)] = 120
    wechat_sweep_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 2.0
    wechat_concurrency: Annotated[int, msgspec.Meta(ge=1, le=256)] = 8  # requests in flight

    # Leak detection and fraud holds (B5, app/forensics/): how often the detectors run in each
    # worker (one process at a time), the verifications a leak run reads back to on its first run
    # and past its mark (records are flushed behind), the findings a print file or code pack
    # needs for a ``leaked_file`` alert and for a critical one, and the ring rules' thresholds.
    forensics_interval_seconds: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 300.0
    leak_window_hours: Annotated[int, msgspec.Meta(ge=1, le=24 * 366)] = 24 * 30
    leak_overlap_minutes: Annotated[int, msgspec.Meta(ge=0, le=24 * 60)] = 60
    leak_min_findings: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 5
    leak_critical_findings: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 50
    ring_window_minutes: Annotated[int, msgspec.Meta(ge=1, le=30 * 24 * 60)] = 60
    ring_shared_device_members: Annotated[int, msgspec.Meta(ge=2, le=10_000)] = 5
    ring_distant_stores: Annotated[int, msgspec.Meta(ge=2, le=10_000)] = 3
    ring_verified_elsewhere_claims: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 5
    ring_verified_before_minutes: Annotated[int, msgspec.Meta(ge=1, le=7 * 24 * 60)] = 60

    # The tamper-evident event log (B7, app/chain/): how often the workers chain committed events,
    # and how long a moved chain head waits for its next signed anchor.
    chain_interval_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 2.0
    chain_anchor_seconds: Annotated[int, msgspec.Meta(ge=1, le=31 * 86400)] = 3600

    # Field force (app/field/): a nameplate check-in farther than this many metres from the
    # store's recorded position is kept and flagged out_of_range.
    field_checkin_radius_m: Annotated[int, msgspec.Meta(ge=10, le=100_000)] = 200
    # Photos (app/media/): the largest upload accepted (413 beyond), and where they are kept:
    # "local" (a directory; unset: $VAR_DIR/media) or "s3" (a bucket of an S3-compatible server,
    # app/media/s3.py: endpoint, bucket, region, access key id and secret, an optional key prefix;
    # the secret from the environment or a file, never the database).
    media_max_bytes: Annotated[int, msgspec.Meta(ge=1024, le=MEDIA_MAX_BYTES_CAP)] = 5 * 1024 * 1024
    # what one user may upload in 24 hours (429 photo_quota beyond): a rep's day of photos, not
    # a disk filled at 140 MB/s (probe G)
    media_daily_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1 << 40)] = 200 * 1024 * 1024
    media_store: Literal["local", "s3"] = "local"
    media_dir: str | None = None
    media_s3_endpoint: Annotated[str, msgspec.Meta(pattern=r"^https?://[^/?#@\s]+/?\Z")] | None = (
        None
    )
    media_s3_bucket: Annotated[
        str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
    ] | (None) = None
    media_s3_region: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9-]{1,40}\Z")] = "us-east-1"
    media_s3_access_key_id: str | None = None
    media_s3_secret_access_key: str | None = None
    media_s3_secret_access_key_file: str | None = None
    media_s3_prefix: Annotated[
        str, msgspec.Meta(pattern=r"^([A-Za-z0-9_-][A-Za-z0-9._-]*/)*\Z")
    ] = ""
    # Catalogue media (app/media/catalog.py): the largest product image and product video
    # uploaded (413 catalog_media_too_large beyond), kept in the photos' store.
    catalog_image_max_bytes: Annotated[int, msgspec.Meta(ge=1024, le=MEDIA_MAX_BYTES_CAP)] = (
        5 * 1024 * 1024
    )
    catalog_video_max_bytes: Annotated[
        int, msgspec.Meta(ge=1024, le=CATALOG_MEDIA_MAX_BYTES_CAP)
    ] = 50 * 1024 * 1024
    # the most a brand keeps in catalogue media, all its images and videos together (409
    # catalog_quota_exceeded beyond; a re-upload of bytes it has is free)
    catalog_brand_quota_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1 << 50)] = 2 * 1024**3

    # The office console's build (console/dist, made by `make console`), served at /console;
    # unset: console/dist of this checkout.
    console_dist: str | None = None

    # Personal information kept no longer than needed (app.retention): a verification record's
    # client address and id, user agent, position and claim retry key (a record naming its
    # member keeps the key's md5) this many days after the scan (and a fraud hold's copies of
    # them, after the hold was opened); a finished SMS's
    # number and variables, and a finished WeChat message's openid, data and link, this many days
    # after it was queued (at least SMS_MARKETING_INTERVAL_HOURS, which reads the SMS numbers).
    # 0: kept for ever; else at least 30.
    retain_scan_details_days: Annotated[int, msgspec.Meta(ge=0, le=36500)] = 365
    retain_sms_days: Annotated[int, msgspec.Meta(ge=0, le=36500)] = 365

    log_level: Annotated[str, msgspec.Meta(pattern=r"^(DEBUG|INFO|WARNING|ERROR)(?!\n)$")] = "INFO"
    # The fraction of answers below 400 that get an access log line (app.front); every 4xx and
    # 5xx answer is logged. 1: every request (the default); lower it for peaks.
    access_log_sample: Annotated[float, msgspec.Meta(ge=0, le=1)] = 1.0

    def __post_init__(self) -> None:
        if self.db_pool_min > self.db_pool_max:
            raise SettingsError(f"{PREFIX}DB_POOL_MIN must not exceed {PREFIX}DB_POOL_MAX")
        # as an organisation's (``app.orgs.schemas.CompanyPrefix``): GS1 allocates no all-zero
        # prefix, and by the longest-prefix rule "000000" claims every GTIN-8 (000000…)
        if not self.gs1_company_prefix.strip("0"):
            raise SettingsError(
                f"{PREFIX}GS1_COMPANY_PREFIX={self.gs1_company_prefix} is all zeros: GS1 "
                "allocates no such prefix"
            )
        versions = self.active_key_versions
        if self.replica_sticky_seconds < self.replica_max_lag_seconds:
            raise SettingsError(
                f"{PREFIX}REPLICA_STICKY_SECONDS must be at least {PREFIX}REPLICA_MAX_LAG_SECONDS"
            )
        # a lease that ends before its sender's claim has: the row sent again meanwhile
        if self.webhook_lease_seconds <= self.webhook_timeout_seconds:
            raise SettingsError(
                f"{PREFIX}WEBHOOK_LEASE_SECONDS must exceed {PREFIX}WEBHOOK_TIMEOUT_SECONDS"
            )
        # and the send_sms job, stopped 5 s before the lease ends (workers/sms.py), makes one
        # claim at least: a lease within 5 s of a claim's longest stopped a job mid-claim
        if self.sms_lease_seconds - 5 <= self.sms_claim_seconds:
            levels = (self.sms_gateway_batch - 1).bit_length()
            raise SettingsError(
                f"{PREFIX}SMS_LEASE_SECONDS must exceed {self.sms_claim_seconds + 5:g} s, the "
                f"longest claim of the SMS sender ({PREFIX}SMS_GATEWAY_TIMEOUT for its requests "
                f"and one more for each of the {levels} halvings of a refused batch of "
                f"{PREFIX}SMS_GATEWAY_BATCH) and the 5 s its job stops before the lease ends"
            )
        for name, days in (
            ("RETAIN_SCAN_DETAILS_DAYS", self.retain_scan_details_days),
            ("RETAIN_SMS_DAYS", self.retain_sms_days),
        ):
            if 0 < days < 30:
                raise SettingsError(f"{PREFIX}{name} must be 0 (kept for ever) or at least 30")
        if self.retain_sms_days and self.retain_sms_days * 24 < self.sms_marketing_interval_hours:
            raise SettingsError(
                f"{PREFIX}RETAIN_SMS_DAYS must cover {PREFIX}SMS_MARKETING_INTERVAL_HOURS (the "
                "spacing of marketing messages reads the numbers they went to)"
            )
        # a WeChat claim's longest: a token fetched, the message sent, the token refreshed and
        # the message sent again (app.wechat.sender), each within WECHAT_TIMEOUT
        if self.wechat_lease_seconds - 5 <= 4 * self.wechat_timeout:
            raise SettingsError(
                f"{PREFIX}WECHAT_LEASE_SECONDS must exceed four {PREFIX}WECHAT_TIMEOUT and 5 s"
            )
        for outbox, base, cap in (
            ("WEBHOOK", self.webhook_backoff_seconds, self.webhook_backoff_max_seconds),
            ("SMS", self.sms_backoff_seconds, self.sms_backoff_max_seconds),
            ("WECHAT", self.wechat_backoff_seconds, self.wechat_backoff_max_seconds),
        ):
            if base > cap:
                raise SettingsError(
                    f"{PREFIX}{outbox}_BACKOFF_SECONDS must not exceed "
                    f"{PREFIX}{outbox}_BACKOFF_MAX_SECONDS"
                )
        for name in ("database_url", "database_replica_url"):
            _check_postgres_url(name, getattr(self, name))
        _check_redis_url(self.redis_url)
        _check_broker_url(self.broker_url)
        port = self.resolver_host.rpartition("]")[2].partition(":")[2]
        if port and not 1 <= int(port) <= 65535:
            raise SettingsError(f"{PREFIX}RESOLVER_HOST: the port must be from 1 to 65535")
        if self.media_store == "s3":
            self.media_s3_secret()
        if self.ip_regions_file and not os.access(self.ip_regions_file, os.R_OK):
            raise SettingsError(f"{PREFIX}IP_REGIONS_FILE={self.ip_regions_file} cannot be read")
        if self.sms_gateway == "http" and not self.sms_gateway_url:
            raise SettingsError(f"{PREFIX}SMS_GATEWAY=http needs {PREFIX}SMS_GATEWAY_URL")
        _check_sms_template_ids(self.sms_template_ids)
        if self.current_key_version not in versions:
            raise SettingsError(
                f"{PREFIX}CURRENT_KEY_VERSION={self.current_key_version} is not one of "
                f"{PREFIX}KEY_VERSIONS={self.key_versions}"
            )

    @property
    def active_key_versions(self) -> tuple[int, ...]:
        """``TRACECODE_KEY_VERSIONS`` as the Rust core takes them (``check_versions`` of
        ``core_rs/src/keys.rs``): 1 to ``MAX_KEY_VERSIONS`` distinct versions from 1 up. Checked
        at start-up (``__post_init__``): a list the core refuses stopped the API and the CLI
        with a traceback naming no variable when the scheme was built (a probe: ``1,1``)."""
        try:
            versions = tuple(int(part) for part in self.key_versions.split(",") if part.strip())
        except ValueError:
            raise SettingsError(
                f"{PREFIX}KEY_VERSIONS must be a comma-separated list of integers"
            ) from None
        if not versions or any(not 1 <= v <= 65535 for v in versions):
            raise SettingsError(f"{PREFIX}KEY_VERSIONS must list versions between 1 and 65535")
        if len(versions) > MAX_KEY_VERSIONS:
            raise SettingsError(
                f"{PREFIX}KEY_VERSIONS lists {len(versions)} versions: at most "
                f"{MAX_KEY_VERSIONS} are active at once"
            )
        twice = next((v for i, v in enumerate(versions) if v in versions[:i]), None)
        if twice is not None:
            raise SettingsError(f"{PREFIX}KEY_VERSIONS lists version {twice} twice")
        return versions

    @property
    def sms_claim_seconds(self) -> float:
        """The longest a claim of the SMS sender (``app.sms.sender``) can take: a claim is one
        wave, ``SMS_CONCURRENCY`` requests of ``SMS_GATEWAY_BATCH`` messages sent at once, each
        ``SMS_GATEWAY_TIMEOUT`` at most, and a batch the gateway refuses (400/422) is split in
        halves down to the message at fault, one time-out more per level
        (``app.sms.gateway.HttpGateway.send`` bounds the call to this). The lease outlasts it."""
        levels = (self.sms_gateway_batch - 1).bit_length()  # halvings of a batch down to one
        return self.sms_gateway_timeout * (1 + levels)

    @property
    def public_url(self) -> str:
        """The root of every public URL: ``{PUBLIC_SCHEME}://{RESOLVER_HOST}``."""
        return f"{self.public_scheme}://{self.resolver_host}"

    @property
    def var_path(self) -> Path:
        return Path(self.var_dir).resolve()

    @property
    def export_path(self) -> Path:
        return Path(self.export_dir).resolve() if self.export_dir else self.var_path / "exports"

    @property
    def media_path(self) -> Path:
        return Path(self.media_dir).resolve() if self.media_dir else self.var_path / "media"

    def media_s3_secret(self) -> str:
        """The S3 secret access key (``TRACECODE_MEDIA_S3_SECRET_ACCESS_KEY`` or the file named
        by ``..._FILE``), after checking that every setting the S3 store needs is there."""
        missing = [
            f"{PREFIX}{name.upper()}"
            for name in ("media_s3_endpoint", "media_s3_bucket", "media_s3_access_key_id")
            if not getattr(self, name)
        ]
        if not (self.media_s3_secret_access_key or self.media_s3_secret_access_key_file):
            missing.append(f"{PREFIX}MEDIA_S3_SECRET_ACCESS_KEY (or ..._FILE)")
        if missing:
            raise SettingsError(f"{PREFIX}MEDIA_STORE=s3 needs " + ", ".join(missing))
        if self.media_s3_secret_access_key and self.media_s3_secret_access_key_file:
            raise SettingsError(
                f"set only one of {PREFIX}MEDIA_S3_SECRET_ACCESS_KEY and "
                f"{PREFIX}MEDIA_S3_SECRET_ACCESS_KEY_FILE"
            )
        if self.media_s3_secret_access_key:
            return self.media_s3_secret_access_key
        path = Path(self.media_s3_secret_access_key_file or "")
        secret = _secret_file(path, f"{PREFIX}MEDIA_S3_SECRET_ACCESS_KEY_FILE")
        if not secret:
            raise SettingsError(f"{PREFIX}MEDIA_S3_SECRET_ACCESS_KEY_FILE={path} is empty")
        return secret

    def master_key_bytes(self) -> bytes:
        """The 32-byte master secret, from ``TRACECODE_MASTER_KEY`` or the key file."""
        if self.master_key and self.master_key_file:
            raise SettingsError(f"set only one of {PREFIX}MASTER_KEY and {PREFIX}MASTER_KEY_FILE")
        if self.master_key:
            return _decode_key(self.master_key, f"{PREFIX}MASTER_KEY")
        if self.master_key_file:
            path = Path(self.master_key_file)
            text = _secret_file(path, f"{PREFIX}MASTER_KEY_FILE")
            return _decode_key(text, f"the key file {path}")
        raise SettingsError(
            f"no master key: set {PREFIX}MASTER_KEY (64 hex characters or base64 of 32 bytes) "
            f"or {PREFIX}MASTER_KEY_FILE"
        )

    def jwt_key(self) -> bytes:
        """The JWT signing key: ``TRACECODE_JWT_SECRET`` or derived from the master key."""
        if self.jwt_secret:
            if len(self.jwt_secret) < 32:
                raise SettingsError(f"{PREFIX}JWT_SECRET must be at least 32 characters")
            return self.jwt_secret.encode()
        return _derive(self.master_key_bytes(), b"tracecode/jwt")

    def subkey(self, purpose: str) -> bytes:
        """A 32-byte key of one purpose (e.g. ``"member-otp"``), derived from the master key by
        HKDF-SHA256 with the context ``tracecode/<purpose>``: knowing one purpose's key tells
        nothing of the master key or of another purpose's."""
        return _derive(self.master_key_bytes(), f"tracecode/{purpose}".encode())

    def check_serving(self) -> None:
        """What the API and the workers read only when they serve, read now: the master key and
        the JWT key. ``tracecode run``, the API and the workers call it
        before they start, so that a bad value stops start-up with a message naming the
        variable instead of crashing a child (or failing a request) later."""
        self.master_key_bytes()
        self.jwt_key()

    def __repr__(self) -> str:  # never print secrets
        return (
            f"Settings(database_url={redact_url(self.database_url)!r}, "
            f"database_replica_url={redact_url(self.database_replica_url)!r}, "
            f"broker_url={redact_url(self.broker_url)!r}, var_dir={self.var_dir!r})"
        )


@lru_cache(maxsize=64)
def _derive(master: bytes, context: bytes) -> bytes:
    """HKDF-SHA256 of the master key for one context, computed once per process (~150 µs
    each: the JWT key was derived again on every authenticated request)."""
    from Crypto.Hash import SHA256
    from Crypto.Protocol.KDF import HKDF

    return HKDF(master, 32, b"", SHA256, context=context)  # type: ignore[no-any-return]


def parse_master_key(text: str) -> bytes:
    """Decode a 32-byte master key written as 64 hex digits or as base64 (standard or URL-safe,
    with its ``=`` padding or without: URL-safe base64 is mostly written without, as
    ``secrets.token_urlsafe(32)`` and JOSE tools write it; a probe: such a key was refused).

    Raises ValueError without echoing the text, which is a secret.
    """
    text = text.strip()
    key = b""
    if len(text) == 64:
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
    if not key:
        if "=" not in text:  # unpadded: the padding it leaves out (a wrong length still fails)
            text += "=" * (-len(text) % 4)
        try:
            key = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            key = b""
    if len(key) != 32:
        raise ValueError("master key must be 32 bytes, as 64 hex digits or base64")
    return key


def _decode_key(text: str, where: str) -> bytes:
    try:
        return parse_master_key(text)
    except ValueError:
        raise SettingsError(f"{where} must hold 32 bytes as 64 hex characters or base64") from None


_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def _check_sms_template_ids(text: str) -> None:
    """``TRACECODE_SMS_TEMPLATE_IDS``: ``name=id`` parts, comma-separated, each name a built-in
    template's (``SMS_TEMPLATES``) and given once, each id non-empty. A probe: parts without
    ``=`` (``otp:SMS_1``) were dropped in silence, and every SMS left with no provider id."""
    var, seen = f"{PREFIX}SMS_TEMPLATE_IDS", set()
    for part in text.split(",") if text else ():
        name, sep, value = (piece.strip() for piece in part.partition("="))
        if not (sep and name and value):
            raise SettingsError(
                f"{var}: {part.strip()!r} is not name=id (e.g. otp=SMS_1,redemption=SMS_2)"
            )
        if name not in SMS_TEMPLATES:
            raise SettingsError(
                f"{var}: {name!r} is no built-in template (one of {', '.join(SMS_TEMPLATES)})"
            )
        if name in seen:
            raise SettingsError(f"{var} names {name!r} twice")
        seen.add(name)


def _check_postgres_url(name: str, url: str | None) -> None:
    """A PostgreSQL URL (``postgresql://`` or ``postgres://``) or a libpq key/value string; the
    value is never echoed (libpq's own error quotes it whole, password included: a probe)."""
    if url is None:
        return
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    var = f"{PREFIX}{name.upper()}"
    url_form = _SCHEME.match(url)  # a URL, not a key/value string whose value holds "://"
    if not url.strip() or (url_form and url_form.group(1) not in ("postgresql", "postgres")):
        raise SettingsError(
            f"{var} must be a postgresql:// URL (the scheme in lower case) or a libpq "
            "connection string"
        )
    try:
        params = conninfo_to_dict(url)
    except ProgrammingError:
        raise SettingsError(
            f"{var} is no valid PostgreSQL URL or libpq connection string"
        ) from None
    refused = _bad_postgres_option(params)
    if refused:
        raise SettingsError(f"{var}: {refused}")


_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_LIBPQ_PORT = re.compile(r"\s*\+?[0-9]{1,5}\s*\Z")  # a number as libpq reads it, blanks around


def _bad_postgres_option(params: Mapping[str, Any]) -> str | None:
    """What libpq or psycopg would refuse only when connecting, of the options read as numbers
    or from a list: the port (one, or one per host, each from 1 to 65535; empty: the default),
    ``connect_timeout`` and ``sslmode`` (a probe: a port ``abc`` passed the settings, and the API
    died at start-up in a 40-line traceback naming no variable). None when they are right."""
    ports = str(params.get("port", "")).split(",")
    hosts = str(params.get("hostaddr") or params.get("host") or "").split(",")
    for port in ports:
        if port.strip() and not (_LIBPQ_PORT.match(port) and 1 <= int(port) <= 65535):
            return "the port must be a number from 1 to 65535"
    if len(ports) > 1 and len(ports) != len(hosts):
        return f"{len(ports)} ports for {len(hosts)} hosts (one port, or one per host)"
    if params.get("connect_timeout") is not None:
        try:
            int(float(params["connect_timeout"]))  # as psycopg reads it
        except (ValueError, OverflowError):
            return "connect_timeout must be a number of seconds"
    if params.get("sslmode") is not None and params["sslmode"] not in _SSLMODES:
        return "sslmode must be one of " + ", ".join(_SSLMODES)
    return None


SECRET_MODE_REFUSED = 0o027  # others' read, write and search; the group's write


def _check_secret_mode(mode: int, path: Path, var: str) -> None:
    """A secret file others may read or write, or its group write (a ``cp`` under umask 022, a
    Kubernetes secret volume's default 0644) is refused, as ssh and libpq's .pgpass refuse
    one (a probe: a master key readable by every user of the host was used in silence). The
    group may read (0440, 0640: a Kubernetes ``fsGroup``, a service's group)."""
    if stat.S_ISREG(mode) and mode & SECRET_MODE_REFUSED:
        raise SettingsError(
            f"{var}={path} has mode {stat.S_IMODE(mode):04o}: a secret file must not be "
            "readable by others nor writable by its group or others (chmod 600 or 640)"
        )


def _secret_file(path: Path, var: str) -> str:
    """The text of a file a secret setting names, stripped, without a leading byte order mark
    (Notepad's UTF-8: a probe, a right key refused, as the CLI's passphrase files read it);
    unreadable or not UTF-8 text (32 raw bytes where hex or base64 belongs: a probe, a
    traceback naming no setting) is a ``SettingsError`` naming the variable, and so is a file
    others may read or anyone but its owner write (``_check_secret_mode``)."""
    try:
        with open(path, "rb") as handle:
            _check_secret_mode(os.fstat(handle.fileno()).st_mode, path, var)
            return handle.read().decode("utf-8-sig").strip()
    except OSError as exc:
        raise SettingsError(f"{var}={path} cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(
            f"{var}={path} is not text: it must hold the secret as text (a key as 64 hex "
            "characters or base64 of 32 bytes)"
        ) from None


def _check_redis_url(url: str | None) -> None:
    """A Redis URL redis-py takes (``redis://``, ``rediss://``, ``unix://``) or a cluster's
    (``redis+cluster://``); its port a number (a bad one failed every entry point with a
    traceback naming no variable: a probe)."""
    if url is None:
        return
    var = f"{PREFIX}REDIS_URL"
    found = _SCHEME.match(url)
    scheme = found.group(1) if found else ""
    if scheme not in ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster"):
        raise SettingsError(
            f"{var} must start with redis://, rediss://, unix:// or redis+cluster:// (in lower "
            "case)"
        )
    if "+cluster" in scheme:
        cluster_nodes(url)  # it raises SettingsError naming what is wrong
        return
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is no number from 0 to 65535
        bad = bool(parts.fragment)
    except ValueError:
        bad = True
    if bad and scheme != "unix":
        raise SettingsError(
            f"{var} is no valid URL: a port that is no number from 0 to 65535, or a password "
            "with #, /, ? or @ not percent-encoded"
        )
    from redis.connection import parse_url  # the client's own reading of the query's options

    try:
        parse_url(url)
    except ValueError as exc:  # a probe: ?socket_timeout=abc failed every entry point later
        raise SettingsError(f"{var}: {exc}") from None
    # parse_url passes an option it does not know on to the connection, which refused it at the
    # first connection: a TypeError naming no variable, a worker restarting for ever (a probe).
    unknown = sorted(set(parse_qs(urlsplit(url).query)) - _redis_url_options(scheme))
    if unknown:
        raise SettingsError(
            f"{var}: {', '.join(unknown)} is not an option of a {scheme}:// connection"
        )
    _check_redis_db(url, scheme)


_DB_NUMBER = re.compile(r"[0-9]{1,9}")


def _check_redis_db(url: str, scheme: str) -> None:
    """The database a Redis URL names: the path ``/N`` of a ``redis(s)://`` URL, or ``?db=N``,
    a number. redis-py's ``parse_url`` drops a path that is no number in silence (``/abc``:
    database 0, another deployment's on a shared Redis) and joins its parts (``/1/2``: 12),
    and a negative one failed only at the first connection (a probe)."""
    var = f"{PREFIX}REDIS_URL"
    parts = urlsplit(url)
    path = "" if scheme == "unix" else parts.path  # unix://: the path is the socket's
    path = path.removesuffix("/")  # /0/: database 0, as redis-py reads it (a review)
    if path and not _DB_NUMBER.fullmatch(path[1:]):
        raise SettingsError(f"{var}: the database (the path after the port) must be /N, a number")
    for value in parse_qs(parts.query).get("db", []):
        if not _DB_NUMBER.fullmatch(value):
            raise SettingsError(f"{var}: ?db= must be a database number")


@lru_cache(maxsize=4)
def _redis_url_options(scheme: str) -> frozenset[str]:
    """What a ``scheme://`` URL's query may name: the keyword arguments that both redis-py's
    blocking and asyncio connection classes of the scheme take (the CLI and the workers use one,
    the API the other), and the pool's ``max_connections``."""
    import inspect

    import redis.asyncio.connection as aio
    import redis.connection as sync

    def accepted(cls: type) -> set[str]:
        return {
            name
            for klass in cls.__mro__
            if "__init__" in vars(klass)
            for name, p in inspect.signature(vars(klass)["__init__"]).parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name != "self"
        }

    kind = {"rediss": "SSLConnection", "unix": "UnixDomainSocketConnection"}
    name = kind.get(scheme, "Connection")
    both = accepted(getattr(sync, name)) & accepted(getattr(aio, name))
    return frozenset(both | {"max_connections"})


def cluster_nodes(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The ``(host, port)`` seed nodes of a cluster URL and the client options it names
    (username, password, ssl). Raises ``SettingsError`` naming what is wrong (password hidden)."""
    scheme, _, rest = url.partition("://")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    where = f"TRACECODE_REDIS_URL={redact_url(url)}"
    if query:  # a probe: options here were dropped in silence (a typo as much as a real one)
        raise SettingsError(f"{where}: a Redis Cluster URL takes no ?options")
    if path not in ("", "0"):
        raise SettingsError(f"{where}: a Redis Cluster has only database 0")
    options: dict[str, Any] = {"ssl": scheme == "rediss+cluster"}
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        options["username"] = unquote(user) or None
        options["password"] = unquote(password) or None
    nodes = []
    for part in netloc.split(","):
        host, _, port = part.strip().rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(f"{where}: each node must be host:port, comma-separated")
        nodes.append((host, int(port)))
    return nodes, options


def _check_broker_url(url: str | None) -> None:
    """Each AMQP URL as the RabbitMQ broker's parser (pika's) takes it: a bad port or option
    failed the API and the worker at import with a traceback, past ``tracecode run``'s checks (a
    probe)."""
    if url is None:
        return
    import pika

    for part in url.split(";"):
        try:
            pika.URLParameters(part)
        except Exception as exc:  # ValueError, TypeError; SyntaxError of an option's literal
            raise SettingsError(
                f"{PREFIX}BROKER_URL is not a valid AMQP URL: {redact_url(str(exc))}"
            ) from None


def redact_url(url: str | None) -> str | None:
    """``url`` (or several joined by ";", or a text quoting some) with any password replaced by
    ``***``, for logs: in the user information (up to its last ``@`` before the host's ``/``, a
    password may hold an ``@`` or a ``;``, as libpq and redis-py read it: a probe saw
    ``Pa55;word`` shown whole) and as a query parameter (``?password=``, as libpq also takes
    it: probe N saw it printed), and in a libpq key/value string (``password=…``). An AMQP
    list (``amqp://…;amqp://…``) is redacted URL by URL without a split: a match stops at the
    next ``/``, and the next URL's ``://`` has one."""
    if url is None:
        return None
    url = re.sub(r"://([^:@/]*):[^/]*@", r"://\1:***@", url)
    url = re.sub(r"([?&](?:password|sslpassword)=)[^&]*", r"\1***", url, flags=re.I)
    # a libpq key/value string ("host=… password=…"; quoted values may hold blanks: probe S)
    return re.sub(
        r"(^|\s)((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)", r"\1\2***", url, flags=re.I
    )


# Variables of the prefix that are no setting: the CLI's API password, the test suite's switches.
OTHER_VARIABLES = frozenset(
    {"API_PASSWORD", "FUZZ_EXAMPLES", "FUZZ_SECONDS", "FUZZ_SEED", "SCREENSHOTS"}
    | {"TEST_RABBITMQ_URL"}
)


def unknown_variables(env: Mapping[str, str] | None = None) -> list[str]:
    """The ``TRACECODE_…`` variables that name no setting, sorted: a typo (probe V:
    ``TRACECODE_DB_URL`` for ``TRACECODE_DATABASE_URL``) is otherwise ignored in silence, and
    the service runs on the default (the embedded database)."""
    env = os.environ if env is None else env
    fields = {f.name.upper() for f in msgspec.structs.fields(Settings)} | OTHER_VARIABLES
    return sorted(k for k in env if k.startswith(PREFIX) and k[len(PREFIX) :] not in fields)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from the environment, with an error naming the bad variable."""
    env = os.environ if env is None else env
    fields = {f.name for f in msgspec.structs.fields(Settings)}
    raw: dict[str, str] = {}
    for key, value in env.items():
        # upper case only, as ``unknown_variables`` reads them (a probe: TRACECODE_port, warned
        # as ignored, was used, and won over TRACECODE_PORT)
        if key.startswith(PREFIX) and key[len(PREFIX) :].isupper():
            name = key[len(PREFIX) :].lower()
            if name in fields and value != "":
                raw[name] = value
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = re.search(r"at `\$\.(\w+)`", message)
        if match:
            var = PREFIX + match.group(1).upper()
            reason = message.split(" - at ")[0]
            raise SettingsError(f"{var}: {reason}") from None
        raise SettingsError(message) from None
    check_broker(settings)
    return settings


def check_broker(settings: Settings) -> None:
    """Jobs cannot run on a Redis Cluster (dramatiq's Redis broker uses scripts over keys of many
    hash slots): with a cluster ``redis_url``, ``broker_url`` (RabbitMQ) is required."""
    if settings.redis_url and settings.redis_url.startswith(REDIS_CLUSTER_SCHEMES):
        if not settings.broker_url:
            raise SettingsError(
                f"{PREFIX}REDIS_URL names a Redis Cluster, where the job queues cannot run "
                f"(dramatiq's Redis broker needs one server): set {PREFIX}BROKER_URL to a "
                "RabbitMQ (amqp://…)"
            )
