"""Per-IP limits of member sign-in, so nobody sends SMS to arbitrary phones or guesses codes.

* One-time codes asked for: every request counts (each one sends an SMS), ``member_otp_ip_max``
  per client IP within ``member_otp_ip_window_seconds`` → 429 ``rate_limited``. The per-phone
  throttle (1 a minute, 10 a day) is the SMS outbox's (``app.sms.outbox``, ``sms_throttled``).
* Failed log-ins: the staff log-in limiter of ``app.auth.limits`` on counters of their own, the
  account being the brand and phone: per IP over all phones (``login_ip_max_failures``,
  ``rate_limited``), per phone and IP (three times ``member_otp_max_tries``, ``login_locked``
  for ``login_lockout_seconds``; a locked address gets no new code either). No lock per phone
  over all IPs, as staff accounts have: wrong codes cost nothing to send, so anyone could lock a
  phone out everywhere (a probe: 110 posts from 11 addresses locked a member out, who had never
  been sent a code); a guess needs a live code, and each dies after ``member_otp_max_tries``
  wrong tries, at most 10 sent to a phone a day.

Staff accounts (a user, or an API key) are counted too where a lookup by a guessed value would tell
what they may not see: unknown redemption codes (family ``CODE_GUESS``), and whole-number phone
searches finding no member by staff who see phones masked (``PHONE_MISS``: ``138****1234``
leaves 10,000 candidates, and the one search finding a member names the hidden digits; a probe
walked them). Lookups that find something do not count. Each guess counts on the account's own
counter (``CODE_GUESS_MAX``, ``PHONE_MISS_MAX``: one person's typos), on its organisation's
(``Principal.org_id``, an API key's own organisation; ``CODE_GUESS_ORG_MAX``,
``PHONE_MISS_ORG_MAX``) and on its branch's — the organisation right below the brand on its path,
an agent's, with its whole subtree (``CODE_GUESS_BRANCH_MAX``, ``PHONE_MISS_BRANCH_MAX``; an
account at the brand organisation has none: its organisation's counter counts the same
accounts) — and any one full refuses the account's lookups (429 ``rate_limited`` with
``Retry-After``, a lucky guess too) until its window ends; ``Retry-After`` is the longest wait
of the full counters (a review: the first full one's said 2 s while another's ran 14 min). The
organisation's counter stops an admin who makes accounts to guess on: a store's org_admin over
its limit made API keys, then users (``users.write``), and guessed 30 more through each (two
probes) — now all its store's accounts together are bounded by the store's cap. It replaces a
count on an API key's maker (``Principal.key_maker``): that one was bypassed by making users,
and 30 customers' typos at one partner's key locked its maker and every key the maker had made,
across stores (a review). Now a key's typos lock that key only, and its organisation only when
the organisation as a whole is over its cap. The branch's counter stops an agent's org_admin
who, over its own limit and its organisation's, made a user in each store below it and got the
store's whole cap through each (a review): now all accounts of the agent's subtree together are
bounded by the branch's cap. It replaces a counter per brand, which such an admin could fill
alone and so lock every account of the brand — the head office, other agents' stores, partners'
keys — window after window (a review); now it locks its own branch at worst. The branch is
the organisation right below the brand, whatever its kind: where agents sit under a 分公司 (a
``branch`` organisation), they share the 分公司's count, and one of their admins can lock the
others (keying the count on the first organisation below the brand that is no 分公司 would need
the kinds of the path, which the principal does not carry). A brand admin's users in the stores
count on their own branches, each bounded by its cap.

The organisation's cap is ten times an account's: ten busy desks' typos fit in a window, so a
big service desk is not locked by its customers' slips, while the guesses that get through stay
far from a walk — 300 unknown codes a quarter hour, 28,800 a day, against 32^10 ≈ 10^15 codes;
300 phone misses a quarter hour leave a masked phone's 10,000 candidates over eight hours of an
organisation's whole cap (phones are searched by brand staff only: the brand organisation's
cap). An agent's admin making organisations (``orgs.write``) or users in the organisations below
it gets no more than its branch's cap over them all.

The branch's cap is ten times an organisation's (3,000 unknown codes a quarter hour, 288,000 a
day per branch: a brand's few agents together still cannot walk 32^10 codes), while many stores'
typos together do not reach it. It must be high: at the branch's cap every account of the branch
is refused — each of the agent's stores and partners' keys — until the window ends, so a low one
would let a busy day's slips stop the agent's redemptions. Reaching it takes ten organisations'
whole caps. For phone misses the brand organisation's accounts have no branch counter (phones
are searched by the brand's own staff only), so the organisation's cap binds.

Each lookup takes its slots before it is made (``take_guess``: on all its counters at once, in
one script, or on none) and gives them back when it finds something (``give_back_guess``): read
first and counted after, redemption codes sent at once were all looked up past the limit, and so
were phone searches (two probes). On a Redis Cluster an account's counters carry its
brand (``{b<brand_id>}``; an account of no brand, a platform or system one, the fixed
``{sys}``) as their hash tag, so that one script touches one slot (``app.redisconn``): an
account moved to another organisation (always within its brand: an ERP users import's
``_move``) keeps its own counter, as on one server, where the key names are untagged (a
review: tagged by the organisation, a moved user's own counter started anew on a cluster
only).

The client IP is the socket's peer (an IPv6 client counts by its /64); forwarded headers are never
trusted. With Redis unreachable the limits are skipped (logged): a code still dies after
``member_otp_max_tries`` wrong tries, and the outbox still throttles each phone — except the
phone-search limit, which fails closed: whole-number searches by masked staff answer 503
``service_unavailable`` until Redis is back (nothing else would stop the walk; the last 4 digits
still search).
"""

from __future__ import annotations

import logging
from typing import Literal

import msgspec
from litestar.datastructures import State

from app.auth.limits import _REDIS_DOWN, LoginLimiter, client_bucket
from app.auth.principal import Principal, path_ids
from app.config import Settings
from app.errors import ServiceUnavailable, TooManyRequests
from app.redisconn import AnyRedis, is_cluster, script

log = logging.getLogger("tracecode.members")

# Unknown redemption codes one staff account may try per window (a typo now and then is fine).
CODE_GUESS_MAX = 30
CODE_GUESS_WINDOW_SECONDS = 15 * 60
# Whole-number phone searches finding no member, per staff account seeing phones masked, per
# window (the service desk finds callers by their number; a walk of the hidden digits misses).
PHONE_MISS_MAX = 30
PHONE_MISS_WINDOW_SECONDS = 15 * 60
# Of all accounts of one organisation together (users and API keys), per family and window: ten
# times an account's (the module docstring says why).
CODE_GUESS_ORG_MAX = 10 * CODE_GUESS_MAX
PHONE_MISS_ORG_MAX = 10 * PHONE_MISS_MAX
# Of all accounts of one branch together (the top organisation below the brand, an agent's, and
# its whole subtree), per family and window: ten times an organisation's; at it the branch's every
# account is refused, so it is high (the module docstring).
CODE_GUESS_BRANCH_MAX = 10 * CODE_GUESS_ORG_MAX
PHONE_MISS_BRANCH_MAX = 10 * PHONE_MISS_ORG_MAX

# The families of staff guesses (``MemberLimits.take_guess``), each counted on its own counters.
GuessFamily = Literal["code-guess", "phone-miss"]
CODE_GUESS: GuessFamily = "code-guess"
PHONE_MISS: GuessFamily = "phone-miss"

# KEYS: the IP's counter. ARGV: window seconds, max. Answers 0, or the seconds left when over.
_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
if n > tonumber(ARGV[2]) then return math.max(redis.call('TTL', KEYS[1]), 1) end
return 0
"""

# KEYS: the account's counter, its organisation's, its branch's (none for an account at the brand
# organisation). ARGV: window seconds, then each key's max. A slot taken on each counter when none
# is full (answers {0, 0}), else nothing counted and the longest seconds left among the full
# counters (the real wait: a review found the first full one's, 2 s against 14 min) and that
# counter's place in KEYS (1: the account, 2: the organisation, 3: the branch).
_TAKE = """
local wait, at = 0, 0
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i + 1]) then
    local left = math.max(redis.call('TTL', key), 1)
    if left > wait then wait, at = left, i end
  end
end
if wait > 0 then return {wait, at} end
for _, key in ipairs(KEYS) do
  redis.call('INCR', key)
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ARGV[1]) end
end
return {0, 0}
"""

# KEYS: the account's counter, its organisation's, its branch's: the slot ``_TAKE`` took on each
# given back (a counter whose window ended meanwhile is left as it is: never below zero, never
# without its expiry).
_GIVE_BACK = """
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
end
return 0
"""


class MemberLimits:
    def __init__(self, redis_client: AnyRedis, settings: Settings) -> None:
        self.redis = redis_client
        self.settings = settings
        self.ns = f"{settings.redis_namespace}:member"
        # The staff limiter's rules on member counters. A phone is locked for an address after
        # three codes' worth of wrong tries, not one: a member who mistypes a code to death
        # asks for a new one and goes on.
        per_phone = 3 * settings.member_otp_max_tries
        self.login = LoginLimiter(
            redis_client,
            msgspec.structs.replace(
                settings,
                login_max_failures=per_phone,
                login_account_max_failures=2**31,  # none (see the module docstring)
            ),
        )
        self.login.ns = f"{self.ns}:login"
        self._count = script(redis_client, _COUNT)
        self._take = script(redis_client, _TAKE)
        self._give_back = script(redis_client, _GIVE_BACK)
        self.cluster = is_cluster(redis_client)

    async def forget_phone(self, brand_id: int, phone: str) -> None:
        """The sign-in limits' memory of the phone (its locks, counts and the addresses it
        signed in from, kept 30 days) goes: its membership is erased (a probe found the
        addresses there after the erasure)."""
        await self.login.clear(login_account(brand_id, phone), forget=True)

    async def code_requested(self, ip: str) -> None:
        """Count one code request of this client; 429 ``rate_limited`` over the limit."""
        await self._per_ip("otp-ip", ip, self.settings.member_otp_ip_max, "codes asked for")

    async def wechat_started(self, ip: str) -> None:
        """Count one WeChat sign-in started by this client (each keeps an OAuth state in Redis);
        429 ``rate_limited`` over the limit."""
        await self._per_ip("wechat-ip", ip, self.settings.member_wechat_ip_max, "sign-ins started")

    async def _per_ip(self, family: str, ip: str, most: int, what: str) -> None:
        try:
            retry = int(
                await self._count(
                    keys=[f"{self.ns}:{family}:{client_bucket(ip)}"],
                    args=[self.settings.member_otp_ip_window_seconds, most],
                )
            )
        except _REDIS_DOWN as exc:
            log.warning(
                "member %s limit skipped: Redis unavailable", family, extra={"error": str(exc)}
            )
            return
        if retry:
            raise TooManyRequests(
                f"too many {what} from this address; try again later",
                code="rate_limited",
                details={"retry_after": retry},
                headers={"Retry-After": str(retry)},
            )

    # -- staff guessing: redemption codes, masked phones' hidden digits -------------------

    def _guess_keys(self, actor: Principal, family: str) -> list[str]:
        """The counters a staff account's guesses count on: its own (a user's, or an API key's),
        its organisation's and its branch's (``t<id>``; none at the brand organisation, whose
        accounts its organisation's counter already counts). On a cluster all carry the brand as
        hash tag (one slot; an account's own key stays the same when it moves to another
        organisation)."""
        own = f"u{actor.user_id}" if actor.user_id is not None else f"k{actor.api_key_id}"
        brand, branch = _brand_and_branch(actor)
        tag = f"{{{brand}}}" if self.cluster else ""
        whos = (own, f"o{actor.org_id}", *((branch,) if branch else ()))
        return [f"{self.ns}:{family}:{who}{tag}" for who in whos]

    async def take_guess(self, actor: Principal, family: GuessFamily) -> bool:
        """Before a lookup by a guessed value in ``family``: 429 ``rate_limited`` once the staff
        account has ``CODE_GUESS_MAX`` unknown redemption codes, or ``PHONE_MISS_MAX``
        whole-number phone searches finding no member, within its window, or its organisation
        ``CODE_GUESS_ORG_MAX`` or ``PHONE_MISS_ORG_MAX`` of them, or its branch
        ``CODE_GUESS_BRANCH_MAX`` or ``PHONE_MISS_BRANCH_MAX`` (nobody walks the code space, nor
        a masked phone's hidden digits; ``Retry-After`` the longest wait of the full counters);
        otherwise the lookup counts as one of them on each counter from now on, until
        ``give_back_guess`` (it found something). Taken before the lookup in one script, so
        lookups sent at once cannot all pass. Redis unreachable: a code lookup
        goes on uncounted (False: nothing to give back), a phone search is 503
        ``service_unavailable`` (fails closed, see the module docstring)."""
        window, what, *most = _rules(family)
        keys = self._guess_keys(actor, family)
        try:
            retry, full = await self._take(keys=keys, args=[window, *most[: len(keys)]])
        except _REDIS_DOWN as exc:
            if family == CODE_GUESS:
                log.warning(
                    "code guess limit skipped: Redis unavailable", extra={"error": str(exc)}
                )
                return False
            log.warning("phone search refused: Redis unavailable", extra={"error": str(exc)})
            raise ServiceUnavailable(
                "searching by a whole phone number is unavailable now; search by its last 4 "
                "digits, or retry shortly",
            ) from exc
        if int(retry):
            by = _FULL[int(full)]
            raise TooManyRequests(
                f"too many {what} {by}; try again later",
                code="rate_limited",
                details={"retry_after": int(retry)},
                headers={"Retry-After": str(int(retry))},
            )
        return True

    async def give_back_guess(self, actor: Principal, family: GuessFamily) -> None:
        """The slots ``take_guess`` took (the account's, its organisation's, its branch's), given
        back: the lookup found something (or ended before telling whether it would)."""
        try:
            await self._give_back(keys=self._guess_keys(actor, family), args=[])
        except _REDIS_DOWN as exc:
            log.warning("%s not given back: Redis unavailable", family, extra={"error": str(exc)})


# Whose counter was full, by its place in ``_TAKE``'s KEYS: what the refusal says.
_FULL = {1: "by this account", 2: "by this organisation", 3: "by this branch of the brand"}


def _brand_and_branch(actor: Principal) -> tuple[str, str | None]:
    """The account's hash tag on a cluster, its brand: ``b<brand_id>`` (an account of no brand,
    its path no brand's: ``sys``, a tag of its own); and its branch's counter: ``t<id>`` of the
    organisation right below the brand on its path (an agent's: its whole subtree), None for an
    account at the brand organisation itself (or of no brand: its organisation's counts it)."""
    try:
        ids = path_ids(actor.org_path)
    except ValueError:  # no brand's path
        return "sys", None
    return f"b{ids[0]}", (f"t{ids[1]}" if len(ids) > 1 else None)


def _rules(family: GuessFamily) -> tuple[int, str, int, int, int]:
    """The family's window in seconds, what the refusal names, and its max of an account, of an
    organisation and of a branch (in ``_guess_keys``' order; read when used)."""
    if family == CODE_GUESS:
        return (
            CODE_GUESS_WINDOW_SECONDS,
            "unknown redemption codes tried",
            CODE_GUESS_MAX,
            CODE_GUESS_ORG_MAX,
            CODE_GUESS_BRANCH_MAX,
        )
    return (
        PHONE_MISS_WINDOW_SECONDS,
        "phone numbers searched that are no member's",
        PHONE_MISS_MAX,
        PHONE_MISS_ORG_MAX,
        PHONE_MISS_BRANCH_MAX,
    )


def login_account(brand_id: int, phone: str) -> str:
    """A member's account in the sign-in limits (``app.auth.limits`` keys it by a keyed hash)."""
    return f"member:{brand_id}:{phone}"


def member_limits(state: State) -> MemberLimits:
    """The application's member limits (made on first use, over the application's Redis)."""
    limits: MemberLimits | None = getattr(state, "member_limits", None)
    if limits is None or limits.redis is not state.redis:
        limits = MemberLimits(state.redis, state.settings)
        state.member_limits = limits
    return limits
