"""A brand's WeChat service account (服务号, SPEC W5): set, read and removed by its own staff.

Held by the brand's own staff with ``wechat.manage`` (403 ``brand_staff_only`` below the
brand, as every member-facing setting: the account speaks to the brand's members); each brand
has its own, and no call ever names another brand's — the brand is the caller's.

The app secret is write-only: sealed with AES-256-GCM under a key derived from the master key
(``Settings.subkey("wechat-secret")``) as it is written, answered only as ``secret_set``, and
left out of the audit rows and the logs. The first ``PUT`` must carry it; a later one without
it keeps the one stored (staff change a template id without retyping the secret) — unless the
app id changes, since a secret is its app's. ``enabled`` turns the "sign in with WeChat" link
and the template messages on; a brand without an account, or with it off, has neither.
Every change is audited (the app id, the templates, ``enabled``, whether the secret changed);
a save that changes nothing (the same values, no secret or the stored one) writes nothing and
is not audited.
An app id is one brand's (409 ``wechat_app_id_taken``; migration 0130's unique index).
An openid is one app's: a save with another app id than the brand's account had — the one set,
or, when none is (removed), the one last audited — deletes the brand's members' bindings in its
transaction (``after.bindings_removed``: their count, no openid). The old app's openids mean
nothing to the new one: messages went to openids it does not know, profiles said "linked" and
WeChat sign-in through the new app found nobody (a probe). Messages still waiting for them fail
as a member's who unbound (``app.wechat.sender``). An openid given by the old app and not bound
yet (a sign-in begun before the save) is not bound after it: ``app.wechat.bindings.bind`` is
given the app id and holds the account's row FOR SHARE (a review). Saves and removals of one
brand's account take ``Lock.WECHAT_ACCOUNT`` first: ``FOR UPDATE`` locks no row before the first
save, and two first saves at once each audited a ``create`` (a probe). Their order: that lock,
the account's row, the brand's bindings; a bind's: the member's row, the account's row FOR
SHARE, the bindings (no cycle: a save locks no member's row, a bind no binding before the
account's row).
"""

from __future__ import annotations

from typing import Any

import msgspec
from psycopg.types.json import Jsonb

from app import audit
from app.auth.principal import Principal
from app.config import Settings
from app.db import Conn
from app.errors import Conflict, NotFound, ValidationFailed
from app.locks import Lock, xact_lock
from app.members.principal import brand_of_staff
from app.paging import Page, fetch_page
from app.webhooks import signing
from app.wechat.bindings import masked
from app.wechat.schemas import AccountIn, AccountOut, MessageOut, Templates

MANAGE = "wechat.manage"
_SEAL = "wechat-secret"
_COLUMNS = "brand_id, app_id, secret_sealed, templates, enabled, updated_by, updated_at"


class Account(msgspec.Struct, frozen=True, kw_only=True):
    """A brand's account as the OAuth pages and the sender use it (secret unsealed);
    ``brand_active``: whether its brand is (a brand turned off sends no marketing)."""

    brand_id: int
    app_id: str
    secret: str
    templates: dict[str, str]
    enabled: bool
    brand_active: bool = True

    def __repr__(self) -> str:  # never print the secret
        return f"Account(brand_id={self.brand_id}, app_id={self.app_id!r}, secret='***')"


def seal(settings: Settings, secret: str) -> bytes:
    """The secret encrypted for storage: nonce + ciphertext + tag (the webhooks' sealing,
    ``app.webhooks.signing.seal``, under this domain's own subkey)."""
    return signing.seal(settings, secret, _SEAL)


def unseal(settings: Settings, blob: bytes) -> str:
    """The stored secret (``ValueError`` when it was sealed under another master key)."""
    return signing.unseal(settings, blob, _SEAL)


def _brand(actor: Principal) -> int:
    return brand_of_staff(actor, MANAGE, "the WeChat account is set")


async def _row(conn: Conn, brand_id: int, lock: bool = False) -> dict[str, Any] | None:
    sql = f"SELECT {_COLUMNS} FROM wechat_accounts WHERE brand_id = %s"
    return await (await conn.execute(sql + (" FOR UPDATE" if lock else ""), (brand_id,))).fetchone()


def _templates(raw: Any) -> Templates:
    return msgspec.convert(
        {k: v for k, v in (raw or {}).items() if k in Templates.__struct_fields__}, Templates
    )


def _out(brand_id: int, row: dict[str, Any] | None) -> AccountOut:
    if row is None:
        return AccountOut(
            brand_id=brand_id,
            configured=False,
            app_id=None,
            secret_set=False,
            templates=Templates(),
            enabled=False,
            updated_at=None,
            updated_by=None,
        )
    return AccountOut(
        brand_id=brand_id,
        configured=True,
        app_id=row["app_id"],
        secret_set=bool(row["secret_sealed"]),
        templates=_templates(row["templates"]),
        enabled=row["enabled"],
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
    )


def _audited(out: AccountOut | None) -> dict[str, Any] | None:
    """What the audit keeps of an account: never the secret, whether one is set."""
    if out is None or not out.configured:
        return None
    return {
        "app_id": out.app_id,
        "templates": msgspec.to_builtins(out.templates),
        "enabled": out.enabled,
        "secret_set": out.secret_set,
    }


async def _check_app_id(conn: Conn, brand_id: int, app_id: str) -> None:
    """409 ``wechat_app_id_taken`` when another brand's account has ``app_id``. An app id is
    public (every OAuth redirect of the brand's sign-in page shows it): a brand saving another's
    with a made-up secret sent its template messages as that brand's account (a probe). One
    brand's: the unique index of migration 0130 decides two saves at once (the loser meets it,
    ``app.errors.UNIQUE_CONFLICTS``)."""
    taken = await (
        await conn.execute(
            "SELECT 1 FROM wechat_accounts WHERE app_id = %s AND brand_id <> %s",
            (app_id, brand_id),
        )
    ).fetchone()
    if taken is not None:
        raise Conflict(
            "this WeChat app id is another brand's account",
            code="wechat_app_id_taken",
            details={"field": "app_id"},
        )


def _kept_templates(templates: Templates) -> dict[str, str]:
    """The template ids as stored: those set."""
    return {k: v for k, v in msgspec.to_builtins(templates).items() if v}


def _unchanged(
    settings: Settings, row: dict[str, Any], data: AccountIn, templates: dict[str, str]
) -> bool:
    """Whether saving ``data`` over the stored (locked) ``row`` changes nothing: the same app
    id, template ids and ``enabled``, and no secret or the one stored (read under this master
    key: one sealed under another is sealed again, a change)."""
    if (row["app_id"], row["enabled"]) != (data.app_id, data.enabled):
        return False
    if _kept_templates(_templates(row["templates"])) != templates:
        return False
    if data.app_secret is None:
        return True
    try:
        return unseal(settings, bytes(row["secret_sealed"])) == data.app_secret
    except ValueError:
        return False


async def _last_app_id(conn: Conn, brand_id: int) -> str | None:
    """The app id of the brand's account as last audited: the one removed, when none is set
    (None when none ever was)."""
    row = await (
        await conn.execute(
            """SELECT coalesce(after ->> 'app_id', before ->> 'app_id') AS app_id
                 FROM audit_log WHERE entity = 'wechat_account' AND entity_id = %s
                ORDER BY id DESC LIMIT 1""",
            (str(brand_id),),
        )
    ).fetchone()
    return row["app_id"] if row else None


async def _unbind_other_app(
    conn: Conn, brand_id: int, row: dict[str, Any] | None, app_id: str
) -> int:
    """The brand's bindings deleted when they are not ``app_id``'s: the account had another app
    id (set, or last audited when removed — a binding is never made without an account); how
    many. The bindings of an account removed and set again with its app id stay."""
    was = row["app_id"] if row is not None else await _last_app_id(conn, brand_id)
    if was == app_id:
        return 0
    cur = await conn.execute("DELETE FROM wechat_bindings WHERE brand_id = %s", (brand_id,))
    return cur.rowcount


async def get_account(conn: Conn, actor: Principal) -> AccountOut:
    """The caller's brand's account (never its secret)."""
    brand_id = _brand(actor)
    return _out(brand_id, await _row(conn, brand_id))


async def put_account(
    conn: Conn, settings: Settings, actor: Principal, data: AccountIn
) -> AccountOut:
    """Set the brand's account; the account as kept. 400 ``validation_failed`` naming
    ``app_secret`` when there is none to keep (the first save, or a new app id)."""
    brand_id = _brand(actor)
    await xact_lock(conn, Lock.WECHAT_ACCOUNT, brand_id)  # FOR UPDATE locks no account yet
    row = await _row(conn, brand_id, lock=True)
    before = _out(brand_id, row)
    if data.app_secret is None and (row is None or row["app_id"] != data.app_id):
        message = "the app secret is required with a new app id"
        raise ValidationFailed(
            f"invalid request (app_secret): {message}",
            details=[{"field": "app_secret", "message": message, "source": "body"}],
        )
    await _check_app_id(conn, brand_id, data.app_id)
    templates = _kept_templates(data.templates or Templates())
    if row is not None and _unchanged(settings, row, data, templates):
        return before  # nothing differs: nothing written, nothing audited (README)
    if data.app_secret is not None:
        sealed = seal(settings, data.app_secret)
    else:
        assert row is not None  # checked above
        sealed = bytes(row["secret_sealed"])
    unbound = await _unbind_other_app(conn, brand_id, row, data.app_id)

    saved = await (
        await conn.execute(
            f"""INSERT INTO wechat_accounts
                    (brand_id, app_id, secret_sealed, templates, enabled, updated_by)
                VALUES (%(b)s, %(a)s, %(s)s, %(t)s, %(e)s, %(u)s)
                ON CONFLICT (brand_id) DO UPDATE
                   SET app_id = excluded.app_id, secret_sealed = excluded.secret_sealed,
                       templates = excluded.templates, enabled = excluded.enabled,
                       updated_by = excluded.updated_by, updated_at = now()
                RETURNING {_COLUMNS}""",
            {
                "b": brand_id,
                "a": data.app_id,
                "s": sealed,
                "t": Jsonb(templates),
                "e": data.enabled,
                "u": actor.person,
            },
        )
    ).fetchone()
    out = _out(brand_id, saved)
    after = _audited(out) or {}
    after["secret_changed"] = data.app_secret is not None
    if unbound:
        after["bindings_removed"] = unbound  # how many, never whose
    await audit.record(
        conn,
        actor,
        "update" if row is not None else "create",
        "wechat_account",
        brand_id,
        before=_audited(before),
        after=after,
        org_id=brand_id,
    )
    return out


async def delete_account(conn: Conn, actor: Principal) -> None:
    """Remove the brand's account (sign-in by WeChat and its messages stop; the members'
    bindings stay, for an account set again with the same app id). 404 when there is none."""
    brand_id = _brand(actor)
    await xact_lock(conn, Lock.WECHAT_ACCOUNT, brand_id)
    row = await _row(conn, brand_id, lock=True)
    if row is None:
        raise NotFound("no WeChat account is set", code="wechat_not_configured")
    await conn.execute("DELETE FROM wechat_accounts WHERE brand_id = %s", (brand_id,))
    await audit.record(
        conn,
        actor,
        "delete",
        "wechat_account",
        brand_id,
        before=_audited(_out(brand_id, row)),
        org_id=brand_id,
    )


async def load(conn: Conn, settings: Settings, brand_id: int) -> Account | None:
    """The brand's account with its secret, when it is set and enabled (and its secret readable
    under this master key); None otherwise. With whether the brand is active: the sender fails
    a turned-off brand's marketing (a probe: a points reminder queued before the deactivation
    went out by WeChat while its SMS twin was failed)."""
    row = await (
        await conn.execute(
            """SELECT a.app_id, a.secret_sealed, a.templates, a.enabled,
                      b.status = 'active' AS brand_active
                 FROM wechat_accounts a JOIN orgs b ON b.id = a.brand_id
                WHERE a.brand_id = %s""",
            (brand_id,),
        )
    ).fetchone()
    if row is None or not row["enabled"]:
        return None
    try:
        secret = unseal(settings, bytes(row["secret_sealed"]))
    except ValueError:
        return None
    return Account(
        brand_id=brand_id,
        app_id=row["app_id"],
        secret=secret,
        templates=dict(row["templates"] or {}),
        enabled=True,
        brand_active=bool(row["brand_active"]),
    )


async def enabled(conn: Conn, brand_id: int) -> bool:
    """Whether the brand's account is set and enabled (the sign-in page's link)."""
    row = await (
        await conn.execute("SELECT enabled FROM wechat_accounts WHERE brand_id = %s", (brand_id,))
    ).fetchone()
    return bool(row and row["enabled"])


async def app_id_of(conn: Conn, brand_id: int) -> str | None:
    """The app id of the brand's account, when one is set (enabled or not)."""
    row = await (
        await conn.execute("SELECT app_id FROM wechat_accounts WHERE brand_id = %s", (brand_id,))
    ).fetchone()
    return str(row["app_id"]) if row else None


async def list_messages(
    conn: Conn,
    actor: Principal,
    state: str | None,
    kind: str | None,
    member_id: int | None,
    page: int,
    per_page: int,
) -> Page[MessageOut]:
    """The brand's template messages, newest first (the delivery log; openids masked)."""
    where = ["brand_id = %(brand)s"]
    params: dict[str, Any] = {"brand": _brand(actor)}
    for name, value in (("state", state), ("kind", kind), ("member_id", member_id)):
        if value is not None:
            where.append(f"{name} = %({name})s")
            params[name] = value

    def make(row: dict[str, Any]) -> MessageOut:
        row["openid"] = masked(row["openid"])
        if row["state"] != "pending":
            row["next_attempt_at"] = None
        return MessageOut(**row)

    return await fetch_page(
        conn,
        columns="""id, member_id, kind, cause_key, state, template_id, openid, attempts, msgid,
                   errcode, last_error, created_at, sent_at, next_attempt_at""",
        source="wechat_messages",
        where=where,
        params=params,
        order="id DESC",
        page=page,
        per_page=per_page,
        make=make,
    )
