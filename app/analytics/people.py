"""People analytics (A4–A7): the roll-up of members, points and verifications into summary
tables, and the recount that proves them. ``app.analytics.people_stats`` serves them.

Queues (migration 0023). Triggers fill four queues in the transaction that writes the source
rows, whoever writes them (the API, the verify flusher and its no-Redis fallback, bulk SQL):
a member registered or changed its region, birthday, band or status (``analytics_member_queue``,
one row per member); a points ledger row (``analytics_ledger_queue``); verifications, counted per
inserting statement by brand, day, product, region and result (``analytics_verify_queue``: a
flush of 5,000 records adds a few dozen rows, bench/RESULTS.md; claims sent again left out,
``NOT_RETRY``, migration 0127); and a product moved to another category
(``analytics_product_queue``, migration 0079, with the category its purchases are still counted
under).

Exactly once. A roll-up batch takes queue rows with ``DELETE … WHERE … IN (SELECT … ORDER BY …
LIMIT n FOR UPDATE SKIP LOCKED) RETURNING``, and folds them in the same transaction: a row is
folded by the one transaction that deleted it, and rows of writers not yet committed are
invisible until a later pass. Verifications fold additively in that one statement. Members and
ledger rows fold into per-member state (``analytics_member_facts``: where the member was counted,
its points, and — in parallel arrays, migration 0025 — its purchases, first and last day per
product, category and in all), and the summaries move by the difference between the old state
and the new, so one roller runs at a time (``Lock.PEOPLE_ROLLUP``). Their rows are read by a
second statement of the transaction, after the take: a member change that touched a queued row
(the trigger's ``DO UPDATE`` locks it) is either committed before the take — and seen by the
read — or skipped by it and left queued.

An erased membership is no member (migration 0141): it leaves the member counts, its points
staying where it was last counted (``_FOLD_MEMBERS``; the trigger queues a change of status).
Its facts keep no region and, of its birthday, the month alone (migration 0146: its points move
to the month's first day of the birthday summary, its month cell unchanged; ``_ERASED_PLACE``).

Summaries: ``analytics_member_regions`` (A4: members by registration day and region, at three
levels: brand, province, city), ``analytics_cycle`` (A5: (member, subject) pairs by the day of
their last purchase — count, purchases, span, frequency buckets — so any range of last purchases
and the days since it are sums; a category's pairs count each member once, which its products'
pairs cannot give, so they are cells of their own, and a member's state per category is derived
from its state per product with the products' categories: a product moved takes its purchases
along when its move is folded, ``_FOLD_MOVES``), ``analytics_points_ages`` (A6: members and
points by birthday, the band being computed when read as the members' own pages do, or by the
chosen band),
``analytics_verifications`` (A7: by day, product or all, brand/province/city; a category is its
products' cells, so a product moved to another category takes its verifications along). Each
has a month twin (``…_m``, the same cells summed by month, moved by the same statement) so a
period reads its whole months there and only its partial months day by day. Inspections are
``app.inspect.summaries``' own roll-up, reused as it is.

Speed (issue 17 targets, bench/bench_analytics_people.py): each batch is summed in SQL with
GROUP BY before one upsert per summary, in key order; one row per member is rewritten however
many products a claim batch touches; a batch's counts are summed as ints (int8 accumulators,
not numerics) with a work_mem that keeps its hashes and sorts in memory; and, given a second
connection, verifications fold on it while members and points fold on the first.

A queue row that cannot be folded (its ledger row is missing, a sum out of range) is
dead-lettered by halves (``app.deadletters.drain``) and the others are folded. ``recount``
compares every summary cell with a count of the source rows, taking what is still queued into
account, in one statement (one snapshot) per summary. A ledger row counts for its member's brand
(the one the member's facts and ``recount`` use), whatever brand the row itself names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from app.db import Conn
from app.deadletters import drain
from app.locks import Lock, run_alone

TZ = "Asia/Shanghai"
MEMBER_QUEUE = "analytics_member_queue"  # dead-letter queue names: the tables themselves
LEDGER_QUEUE = "analytics_ledger_queue"
VERIFY_QUEUE = "analytics_verify_queue"
RESULTS = ("genuine", "unconfirmed", "suspicious", "not_genuine", "wrong_pin", "locked")
# The verification records the figures count: a claim sent again (reason ``claim_retry``) is
# checked, not counted as a new query of its code (``app.verify.fallback.COUNTED``), nor here —
# the trigger (migration 0127), the recount and the dashboard (``app.analytics.dashboard``).
NOT_RETRY = "reason IS DISTINCT FROM 'claim_retry'"


class UnknownRow(ValueError):
    """A queue row names a source row that does not exist: the row's fault (dead-lettered)."""


# -- members (A4, and the member's cell of A6) -------------------------------------------------

_TAKE = """
DELETE FROM {table} WHERE {key} IN (
    SELECT {key} FROM {table} {where} ORDER BY {key} LIMIT %(limit)s FOR UPDATE SKIP LOCKED
) RETURNING {key}
"""
# Ledger rows of one half of the members (by the parity of the member's id): two connections of
# one roller fold the halves at the same time, each member's state on one of them only.
_TAKE_HALF = """
DELETE FROM analytics_ledger_queue WHERE ledger_id IN (
    SELECT q.ledger_id FROM analytics_ledger_queue q JOIN points_ledger l ON l.id = q.ledger_id
    WHERE l.member_id %% 2 = %(half)s
    ORDER BY q.ledger_id LIMIT %(limit)s FOR UPDATE OF q SKIP LOCKED
) RETURNING ledger_id
"""

_AGE_VALUES = "members, claimed, redeemed, expired, adjusted, balance"
_AGE_ADD = ", ".join(f"{c} = a.{c} + EXCLUDED.{c}" for c in _AGE_VALUES.split(", "))
_AGE_SUMS = ", ".join(f"sum({c})" for c in _AGE_VALUES.split(", "))
# the points-by-birthday cells and their months moved by ``adelta``
_AGES_UPSERT = f"""
    INSERT INTO analytics_points_ages AS a (brand_id, birthday, age_band, {_AGE_VALUES})
    SELECT brand_id, birthday, age_band, {_AGE_VALUES} FROM adelta ORDER BY 1, 2, 3
    ON CONFLICT (brand_id, birthday, age_band) DO UPDATE SET {_AGE_ADD}
    RETURNING 1"""
_AGES_M_UPSERT = f"""
    INSERT INTO analytics_points_ages_m AS a (brand_id, month, age_band, {_AGE_VALUES})
    SELECT brand_id, date_trunc('month', birthday)::date, age_band, {_AGE_SUMS}
    FROM adelta GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (brand_id, month, age_band) DO UPDATE SET {_AGE_ADD}
    RETURNING 1"""

# The members' current place, their place as last counted (facts), and the moves between. An
# erased membership is no member (README, erasure): it counts 0 where it was last counted, its
# points staying there (the erasure cleared its region, birthday and band: moved to the current
# place, its points would leave the band they were counted in for the unknown one); one never
# counted (no facts, or facts of its points alone) counts 0 where it is (``_PLACED`` likewise).
# Its facts keep of that place only what the summaries count its points by, no more (a probe:
# they kept its exact birthday, province and city under its id): the birthday's month
# (``analytics_points_ages_m``'s cell; in the day summary its points move to the month's first
# day) and the band it chose, no region (it counts in no region cell) — ``_ERASED_PLACE``.
_ERASED_PLACE = """
    SELECT member_id, brand_id, reg_day,
           CASE WHEN erased THEN '' ELSE province END AS province,
           CASE WHEN erased THEN '' ELSE city END AS city,
           CASE WHEN erased THEN date_trunc('month', birthday)::date ELSE birthday END AS birthday,
           age_band, erased"""
_FOLD_MEMBERS = f"""
WITH mem AS (
    SELECT m.id AS member_id, m.brand_id, (m.created_at AT TIME ZONE '{TZ}')::date AS reg_day,
           coalesce(m.province, '') AS province, coalesce(m.city, '') AS city,
           coalesce(m.birthday, 'infinity') AS birthday,
           CASE WHEN m.birthday IS NULL THEN coalesce(m.age_band, '') ELSE '' END AS age_band,
           m.status = 'erased' AS erased
    FROM members m WHERE m.id = ANY(%(ids)s)
), old AS (
    SELECT f.member_id, f.brand_id, f.reg_day, f.province, f.city, f.birthday, f.age_band,
           f.erased, f.claimed, f.redeemed, f.expired, f.adjusted, f.balance
    FROM analytics_member_facts f WHERE f.member_id = ANY(%(ids)s)
), place AS (
    SELECT m.* FROM mem m LEFT JOIN old o USING (member_id)
    WHERE NOT (m.erased AND o.reg_day IS NOT NULL)
    UNION ALL
    SELECT o.member_id, o.brand_id, o.reg_day, o.province, o.city, o.birthday, o.age_band, true
    FROM mem m JOIN old o USING (member_id) WHERE m.erased AND o.reg_day IS NOT NULL
), cur AS ({_ERASED_PLACE}
    FROM place
), facts AS (
    INSERT INTO analytics_member_facts AS f
        (member_id, brand_id, reg_day, province, city, birthday, age_band, erased)
    SELECT member_id, brand_id, reg_day, province, city, birthday, age_band, erased
    FROM cur ORDER BY member_id
    ON CONFLICT (member_id) DO UPDATE SET
        brand_id = EXCLUDED.brand_id, reg_day = EXCLUDED.reg_day,
        province = EXCLUDED.province, city = EXCLUDED.city,
        birthday = EXCLUDED.birthday, age_band = EXCLUDED.age_band, erased = EXCLUDED.erased
    RETURNING 1
), moved AS (
    SELECT c.brand_id, c.reg_day, c.province, c.city, c.birthday, c.age_band,
           CASE WHEN c.erased THEN 0 ELSE 1 END AS n,
           coalesce(o.claimed, 0) AS claimed, coalesce(o.redeemed, 0) AS redeemed,
           coalesce(o.expired, 0) AS expired, coalesce(o.adjusted, 0) AS adjusted,
           coalesce(o.balance, 0) AS balance
    FROM cur c LEFT JOIN old o USING (member_id)
    UNION ALL
    SELECT brand_id, reg_day, province, city, birthday, age_band,
           CASE WHEN erased THEN 0 ELSE -1 END, -claimed, -redeemed, -expired, -adjusted, -balance
    FROM old WHERE reg_day IS NOT NULL
), delta AS (
    SELECT m.brand_id, v.level, v.province, v.city, m.reg_day AS day, sum(m.n) AS members
    FROM moved m, LATERAL (VALUES (0, '', ''), (1, m.province, ''), (2, m.province, m.city))
                  AS v(level, province, city)
    GROUP BY 1, 2, 3, 4, 5 HAVING sum(m.n) <> 0
), regions AS (
    INSERT INTO analytics_member_regions AS r (brand_id, level, province, city, day, members)
    SELECT brand_id, level, province, city, day, members FROM delta ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (brand_id, level, province, city, day) DO UPDATE
        SET members = r.members + EXCLUDED.members
    RETURNING 1
), months AS (
    INSERT INTO analytics_member_regions_m AS r (brand_id, level, province, city, month, members)
    SELECT brand_id, level, province, city, date_trunc('month', day)::date, sum(members)
    FROM delta GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (brand_id, level, province, city, month) DO UPDATE
        SET members = r.members + EXCLUDED.members
    RETURNING 1
), adelta AS (
    SELECT brand_id, birthday, age_band, sum(n) AS members, sum(claimed) AS claimed,
           sum(redeemed) AS redeemed, sum(expired) AS expired, sum(adjusted) AS adjusted,
           sum(balance) AS balance
    FROM moved GROUP BY 1, 2, 3
), ages AS ({_AGES_UPSERT}
), ages_m AS ({_AGES_M_UPSERT}
)
SELECT (SELECT count(*) FROM cur) AS folded, (SELECT count(*) FROM regions) AS regions,
       (SELECT count(*) FROM months) AS months, (SELECT count(*) FROM ages) AS ages,
       (SELECT count(*) FROM ages_m) AS ages_m, (SELECT count(*) FROM facts) AS facts
"""

# -- the points ledger (A6 points, A5 purchases) -----------------------------------------------

_CYCLE_COLUMNS = "pairs, purchases, span_days, repeaters, f1, f2, f3_5, f6_10, f11"
_CYCLE_SUMS = ", ".join(f"sum({c})" for c in _CYCLE_COLUMNS.split(", "))
_CYCLE_ADD = ", ".join(f"{c} = c.{c} + EXCLUDED.{c}" for c in _CYCLE_COLUMNS.split(", "))
_CYCLE_DELTA = """sum(sign) AS pairs, sum(sign * n) AS purchases, sum(sign * span) AS span_days,
           coalesce(sum(sign) FILTER (WHERE n >= 2), 0) AS repeaters,
           coalesce(sum(sign) FILTER (WHERE n = 1), 0) AS f1,
           coalesce(sum(sign) FILTER (WHERE n = 2), 0) AS f2,
           coalesce(sum(sign) FILTER (WHERE n BETWEEN 3 AND 5), 0) AS f3_5,
           coalesce(sum(sign) FILTER (WHERE n BETWEEN 6 AND 10), 0) AS f6_10,
           coalesce(sum(sign) FILTER (WHERE n > 10), 0) AS f11"""

# The category a product's purchases are counted under: its own, or — while its move to another
# waits in ``analytics_product_queue`` (migration 0079) — the one it had when that move was
# queued, which the members' facts and the cells still hold. The ledger fold, the move fold and
# ``recount`` all read a category through it, so each sees one mapping in its snapshot.
_COUNTED = """(SELECT p.id AS product_id,
           CASE WHEN q.product_id IS NULL THEN p.category_id ELSE q.category_id END AS category_id
    FROM products p LEFT JOIN analytics_product_queue q ON q.product_id = p.id)"""

# A member's state per category is not kept from the claims but derived from its state per
# product (purchases summed, the first day the least, the last the greatest), through
# ``_COUNTED``: a product moved to another category takes its members' purchases along when the
# move is folded. Given ``kept`` (the members' product and all-products entries as they are to
# be), ``held`` (their entries as last counted, categories with minus the category's id) and
# ``who`` (member, brand), ``cpair`` pairs each category entry held with the one derived where
# they differ, ``cmoves`` moves those out of their old cell and into their new one, and
# ``state`` is the members' arrays as they are to be (``kept`` and the derived categories).
_CATEGORIES = f"""
cnew AS (
    SELECT k.member_id, -c.category_id AS subject, sum(k.n)::int AS n,
           min(k.first_day) AS first_day, max(k.last_day) AS last_day
    FROM kept k JOIN {_COUNTED} c ON c.product_id = k.subject
    WHERE k.subject > 0 AND c.category_id IS NOT NULL
    GROUP BY 1, 2
), cpair AS (
    SELECT member_id, subject, h.n AS o_n, h.first_day AS o_first, h.last_day AS o_last,
           c.n AS new_n, c.first_day AS new_first, c.last_day AS new_last
    FROM cnew c FULL JOIN (SELECT * FROM held WHERE subject < 0) h USING (member_id, subject)
    WHERE (h.n, h.first_day, h.last_day) IS DISTINCT FROM (c.n, c.first_day, c.last_day)
), cmoves AS (
    SELECT p.member_id, w.brand_id, p.subject, p.o_last AS last_day, -1 AS sign, p.o_n AS n,
           p.o_last - p.o_first AS span
    FROM cpair p JOIN who w USING (member_id) WHERE p.o_n IS NOT NULL
    UNION ALL
    SELECT p.member_id, w.brand_id, p.subject, p.new_last, 1, p.new_n, p.new_last - p.new_first
    FROM cpair p JOIN who w USING (member_id) WHERE p.new_n IS NOT NULL
), state AS (  -- the arrays of one aggregation take the rows in one order: aligned
    SELECT member_id, array_agg(subject) AS subjects, array_agg(n) AS purchases,
           array_agg(first_day) AS first_days, array_agg(last_day) AS last_days
    FROM (SELECT member_id, subject, n, first_day, last_day FROM kept
          UNION ALL
          SELECT member_id, subject, n, first_day, last_day FROM cnew) x
    GROUP BY member_id
)"""

# The (member, subject) moves of ``moves`` summed into the cycle cells and their months.
_CYCLE_CELLS = f"""
delta AS (
    SELECT brand_id,
           CASE WHEN subject = 0 THEN 'a' WHEN subject > 0 THEN 'p' ELSE 'c' END::"char" AS kind,
           abs(subject) AS subject_id, last_day, {_CYCLE_DELTA}
    FROM moves GROUP BY 1, 2, 3, 4
), cells AS (
    INSERT INTO analytics_cycle AS c (brand_id, kind, subject_id, last_day, {_CYCLE_COLUMNS})
    SELECT brand_id, kind, subject_id, last_day, {_CYCLE_COLUMNS}
    FROM delta ORDER BY 1, 2, 3, 4
    ON CONFLICT (brand_id, kind, subject_id, last_day) DO UPDATE SET {_CYCLE_ADD}
    RETURNING 1
), months AS (
    INSERT INTO analytics_cycle_m AS c (brand_id, kind, subject_id, month, {_CYCLE_COLUMNS})
    SELECT brand_id, kind, subject_id, date_trunc('month', last_day)::date, {_CYCLE_SUMS}
    FROM delta GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (brand_id, kind, subject_id, month) DO UPDATE SET {_CYCLE_ADD}
    RETURNING 1
)"""

# Points are added to the member's facts and, when the member is counted in a cell already, to
# that cell. The member's purchase state (per subject: 0 all products, a product id, minus a
# category id) lives in arrays of its facts row: the batch's claims are summed per (member,
# product) and in all in SQL, merged with the unnested old state, the categories derived from
# the merged products (``_CATEGORIES``), and the merged arrays rewrite the row (one row per
# member, not per subject). Each changed (member, subject) pair moves its old contribution out
# of the cell of its old last day and its new one in (day and month cells).
# A ledger row is folded under its member's brand, as ``recount`` counts it (a probe: a row
# naming another brand, written by SQL, made two ``pts`` rows of one member, the facts' upsert
# raised CardinalityViolation, and the batch was retried as it was, for ever: no member of any
# brand was rolled up again). Members never change brand: the join is a primary-key look-up.
_FOLD_LEDGER = f"""
WITH l AS (
    SELECT pl.id, pl.member_id, m.brand_id, pl.kind, pl.points, pl.claim_id
    FROM points_ledger pl JOIN members m ON m.id = pl.member_id
    WHERE pl.id = ANY(%(ids)s)
), pts AS (
    SELECT member_id, brand_id,
           -- a draw's points prize (``app.draws``) is claimed points too: the columns add up
           coalesce(sum(points) FILTER (WHERE kind IN ('claim', 'draw')), 0) AS claimed,
           coalesce(-sum(points) FILTER (WHERE kind IN ('redemption', 'refund')), 0) AS redeemed,
           coalesce(-sum(points) FILTER (WHERE kind = 'expiry'), 0) AS expired,
           coalesce(sum(points) FILTER (WHERE kind = 'adjustment'), 0) AS adjusted,
           sum(points) AS balance
    FROM l GROUP BY 1, 2
), bought AS (
    SELECT l.member_id, l.brand_id, c.product_id,
           (c.claimed_at AT TIME ZONE '{TZ}')::date AS day
    FROM l JOIN point_claims c ON c.id = l.claim_id
    WHERE l.kind = 'claim'
), subj AS (
    SELECT b.member_id, b.brand_id, s.subject, count(*)::int AS n,
           min(b.day) AS first_day, max(b.day) AS last_day
    FROM bought b, LATERAL (VALUES (0::bigint), (b.product_id)) AS s(subject)
    WHERE s.subject IS NOT NULL
    GROUP BY 1, 2, 3
), held AS (
    SELECT f.member_id, u.subject, u.n, u.first_day, u.last_day
    FROM analytics_member_facts f,
         unnest(f.subjects, f.purchases, f.first_days, f.last_days)
             AS u(subject, n, first_day, last_day)
    WHERE f.member_id IN (SELECT member_id FROM pts) AND cardinality(f.subjects) > 0
), pair AS (
    SELECT member_id, subject, s.brand_id, s.n AS add_n, h.n AS o_n, h.first_day AS o_first,
           h.last_day AS o_last, coalesce(s.n, 0) + coalesce(h.n, 0) AS new_n,
           least(s.first_day, h.first_day) AS new_first,
           greatest(s.last_day, h.last_day) AS new_last
    FROM subj s FULL JOIN (SELECT * FROM held WHERE subject >= 0) h USING (member_id, subject)
), kept AS (
    SELECT member_id, subject, new_n AS n, new_first AS first_day, new_last AS last_day
    FROM pair
), who AS (
    SELECT member_id, brand_id FROM pts
), {_CATEGORIES}, facts AS (
    INSERT INTO analytics_member_facts AS f
        (member_id, brand_id, claimed, redeemed, expired, adjusted, balance,
         subjects, purchases, first_days, last_days)
    SELECT p.member_id, p.brand_id, p.claimed, p.redeemed, p.expired, p.adjusted, p.balance,
           coalesce(s.subjects, '{{}}'), coalesce(s.purchases, '{{}}'),
           coalesce(s.first_days, '{{}}'), coalesce(s.last_days, '{{}}')
    FROM pts p LEFT JOIN state s USING (member_id) ORDER BY p.member_id
    ON CONFLICT (member_id) DO UPDATE SET
        claimed = f.claimed + EXCLUDED.claimed, redeemed = f.redeemed + EXCLUDED.redeemed,
        expired = f.expired + EXCLUDED.expired, adjusted = f.adjusted + EXCLUDED.adjusted,
        balance = f.balance + EXCLUDED.balance,
        subjects = CASE WHEN cardinality(EXCLUDED.subjects) > 0
                        THEN EXCLUDED.subjects ELSE f.subjects END,
        purchases = CASE WHEN cardinality(EXCLUDED.subjects) > 0
                         THEN EXCLUDED.purchases ELSE f.purchases END,
        first_days = CASE WHEN cardinality(EXCLUDED.subjects) > 0
                          THEN EXCLUDED.first_days ELSE f.first_days END,
        last_days = CASE WHEN cardinality(EXCLUDED.subjects) > 0
                         THEN EXCLUDED.last_days ELSE f.last_days END
    RETURNING f.member_id, f.brand_id, f.reg_day, f.birthday, f.age_band
), adelta AS (
    SELECT f.brand_id, f.birthday, f.age_band, 0 AS members, sum(p.claimed) AS claimed,
           sum(p.redeemed) AS redeemed, sum(p.expired) AS expired, sum(p.adjusted) AS adjusted,
           sum(p.balance) AS balance
    FROM facts f JOIN pts p USING (member_id) WHERE f.reg_day IS NOT NULL
    GROUP BY 1, 2, 3
), ages AS ({_AGES_UPSERT}
), ages_m AS ({_AGES_M_UPSERT}
), moves AS (
    SELECT brand_id, subject, o_last AS last_day, -1 AS sign, o_n AS n, o_last - o_first AS span
    FROM pair WHERE add_n IS NOT NULL AND o_n IS NOT NULL
    UNION ALL
    SELECT brand_id, subject, new_last, 1, new_n, new_last - new_first
    FROM pair WHERE add_n IS NOT NULL
    UNION ALL
    SELECT brand_id, subject, last_day, sign, n, span FROM cmoves
), {_CYCLE_CELLS}
SELECT (SELECT count(*) FROM l) AS folded, (SELECT count(*) FROM ages) AS ages,
       (SELECT count(*) FROM ages_m) AS ages_m,
       (SELECT count(*) FROM facts) AS facts, (SELECT count(*) FROM cells) AS cells,
       (SELECT count(*) FROM months) AS months
"""

# -- products moved to another category (A5) ----------------------------------------------------

PRODUCT_QUEUE = "analytics_product_queue"

# A product moved to another category (``analytics_product_queue``, filled by a trigger on
# ``products``, migration 0079): the members whose facts hold the moved products have their
# category entries derived again with the products' categories now, and the differences move
# the category cells. The members are found by their facts (a scan of the facts, no index kept
# for it: a move is rare, and an index on the subjects would slow every claim's fold), which
# are what the cells count. Run alone, beside no ledger fold: both rewrite members' facts.
_FOLD_MOVES = f"""
WITH f AS (
    SELECT f.member_id, f.brand_id, f.subjects, f.purchases, f.first_days, f.last_days
    FROM analytics_member_facts f WHERE f.subjects && %(ids)s::bigint[]
), held AS (
    SELECT f.member_id, u.subject, u.n, u.first_day, u.last_day
    FROM f, unnest(f.subjects, f.purchases, f.first_days, f.last_days)
                AS u(subject, n, first_day, last_day)
), kept AS (
    SELECT * FROM held WHERE subject >= 0
), who AS (
    SELECT member_id, brand_id FROM f
), {_CATEGORIES}, facts AS (
    UPDATE analytics_member_facts f
    SET subjects = s.subjects, purchases = s.purchases, first_days = s.first_days,
        last_days = s.last_days
    FROM state s
    WHERE f.member_id = s.member_id AND s.member_id IN (SELECT member_id FROM cmoves)
    RETURNING 1
), moves AS (
    SELECT brand_id, subject, last_day, sign, n, span FROM cmoves
), {_CYCLE_CELLS}
SELECT cardinality(%(ids)s::bigint[]) AS folded, (SELECT count(*) FROM facts) AS facts,
       (SELECT count(*) FROM cells) AS cells, (SELECT count(*) FROM months) AS months
"""

# -- verifications (A7) ------------------------------------------------------------------------

_COUNTS = ", ".join(f"coalesce(sum(n) FILTER (WHERE result = '{r}'), 0) AS {r}" for r in RESULTS)
_SUM_COUNTS = ", ".join(f"sum({r}) AS {r}" for r in RESULTS)
_ADD_COUNTS = ", ".join(f"{r} = v.{r} + EXCLUDED.{r}" for r in RESULTS)
_RESULT_COLUMNS = ", ".join(RESULTS)
# A batch's counts fit an int: summed as ints they aggregate in int8 accumulators (bigints sum
# as numerics, several times slower).
_INT_COUNTS = ", ".join(
    f"coalesce(sum(n::int) FILTER (WHERE result = '{r}'), 0)::int AS {r}" for r in RESULTS
)
_INT_SUMS = ", ".join(f"sum({r})::int AS {r}" for r in RESULTS)

# The cells a count of (brand, day, product, province, city) adds to: product 0 (all) at the
# brand, province and city levels; the product at the brand and province levels. No category
# cells: a category is read as its products' (a probe: cells kept under the category a product
# had when verified stayed there after it moved, and the recount called them drift).
_VERIFY_CELLS = """(VALUES (0::bigint, 0, '', ''), (0, 1, s.province, ''),
                 (0, 2, s.province, s.city), (s.product_id, 0, '', ''),
                 (s.product_id, 1, s.province, ''))
        AS c(product_id, level, province, city)"""

_VERIFY_OF = f"""
WITH taken AS (
    DELETE FROM analytics_verify_queue WHERE id IN ({{take}})
    RETURNING brand_id, day, product_id, province, city, result, n
), summed AS (
    SELECT brand_id, day, product_id, province, city, count(*)::int AS rows,
           sum(n::int)::int AS total, {_INT_COUNTS}
    FROM taken GROUP BY 1, 2, 3, 4, 5
), cells AS (
    SELECT s.brand_id, c.product_id, c.level, c.province, c.city, s.day,
           sum(s.total)::int AS total, {_INT_SUMS}
    FROM summed s, LATERAL {_VERIFY_CELLS}
    WHERE c.product_id IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5, 6
), upserted AS (
    INSERT INTO analytics_verifications AS v
        (brand_id, product_id, level, province, city, day, total, {_RESULT_COLUMNS})
    SELECT brand_id, product_id, level, province, city, day, total, {_RESULT_COLUMNS}
    FROM cells ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (brand_id, product_id, level, province, city, day) DO UPDATE
        SET total = v.total + EXCLUDED.total, {_ADD_COUNTS}
    RETURNING 1
), months AS (
    INSERT INTO analytics_verifications_m AS v
        (brand_id, product_id, level, province, city, month, total, {_RESULT_COLUMNS})
    SELECT brand_id, product_id, level, province, city, date_trunc('month', day)::date,
           sum(total), {_SUM_COUNTS}
    FROM cells GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (brand_id, product_id, level, province, city, month) DO UPDATE
        SET total = v.total + EXCLUDED.total, {_ADD_COUNTS}
    RETURNING 1
)
SELECT (SELECT coalesce(sum(rows), 0) FROM summed)::bigint AS taken,
       (SELECT count(*) FROM upserted) AS upserted, (SELECT count(*) FROM months) AS months
"""
_VERIFY = _VERIFY_OF.replace(
    "{take}",
    "SELECT id FROM analytics_verify_queue ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED",
)
_VERIFY_IDS = _VERIFY_OF.replace(
    "{take}", "SELECT id FROM analytics_verify_queue WHERE id = ANY(%(ids)s) FOR UPDATE SKIP LOCKED"
)


# -- running the roll-up -------------------------------------------------------------------------

BATCH = 200_000  # queue rows per transaction: a batch's sums merge more cells the larger it is
MOVES_BATCH = 1_000  # moved products per transaction (each a scan of the members' facts)
# A batch sums and sorts its rows in memory (the default 4 MB spills them to disk).
_WORK_MEM = "SET LOCAL work_mem = '256MB'"


async def _take_and_fold(
    conn: Conn,
    table: str,
    key: str,
    fold: str,
    *,
    limit: int,
    ids: list[int] | None = None,
    half: int | None = None,
) -> int:
    """One batch in one transaction: take queue rows (the oldest ``limit``, or ``ids``), then
    fold the source rows they name by a second statement (its snapshot sees every change that
    was committed when the take ran). Raises ``UnknownRow`` when a source row is missing."""
    where = f"WHERE {key} = ANY(%(ids)s)" if ids is not None else ""
    take = _TAKE.format(table=table, key=key, where=where)
    if half is not None and ids is None:
        take = _TAKE_HALF
    params = {"limit": limit, "ids": ids, "half": half}
    async with conn.transaction():
        await conn.execute(_WORK_MEM)
        taken = [r[key] for r in await (await conn.execute(take, params)).fetchall()]
        if not taken:
            return 0
        row = await (await conn.execute(fold, {"ids": taken})).fetchone()
        assert row is not None
        if row["folded"] != len(taken):
            raise UnknownRow(f"{len(taken) - row['folded']} queued row(s) of {table} do not exist")
        return len(taken)


async def _fold_verifications(conn: Conn, sql: str, params: dict[str, Any]) -> int:
    async with conn.transaction():
        await conn.execute(_WORK_MEM)
        row = await (await conn.execute(sql, params)).fetchone()
        assert row is not None
        return int(row["taken"])


class Folded(msgspec.Struct, frozen=True, kw_only=True):
    """Queue rows consumed by one roll-up: members, ledger rows, verification counts, products
    moved to another category."""

    members: int
    ledger: int
    verifications: int
    moves: int = 0


def _drainer(
    conn: Conn, table: str, key: str, fold: str, limit: int, half: int | None = None
) -> Callable[[], Awaitable[int]]:
    return lambda: drain(
        conn,
        table,
        table,
        lambda: _take_and_fold(conn, table, key, fold, limit=limit, half=half),
        lambda ids: _take_and_fold(conn, table, key, fold, limit=limit, ids=ids),
        limit,
        key=key,
    )


async def _verifications(conn: Conn, limit: int) -> int:
    return await drain(
        conn,
        VERIFY_QUEUE,
        VERIFY_QUEUE,
        lambda: _fold_verifications(conn, _VERIFY, {"limit": limit}),
        lambda ids: _fold_verifications(conn, _VERIFY_IDS, {"ids": ids}),
        limit,
    )


async def rollup(conn: Conn, limit: int = BATCH, *, other: Conn | None = None) -> Folded:
    """Fold every queue into its summaries, ``limit`` rows per transaction, until they are
    empty. Members first, so a ledger row's member is usually counted already (it need not be:
    its points wait in the member's facts); then the products moved to another category (their
    members' category state), before any ledger fold. ``conn`` must not be inside a
    transaction; run it alone (``rollup_alone``): the member and move folds read and write
    per-member state.

    Given ``other`` (a second connection, autocommit): verifications (additive, apart from
    members and points) fold on it while the members fold on ``conn``; then each connection
    folds the ledger rows of one half of the members (a member's state is moved by one of them
    only; the summary cells they share are added to), and ``conn`` what is left (rows queued
    meanwhile, rows whose ledger row is missing: dead-lettered)."""
    ledger = LEDGER_QUEUE, "ledger_id", _FOLD_LEDGER, limit
    moves = _drainer(conn, PRODUCT_QUEUE, "product_id", _FOLD_MOVES, MOVES_BATCH)
    if other is None:
        members = await _drainer(conn, MEMBER_QUEUE, "member_id", _FOLD_MEMBERS, limit)()
        moved = await moves()
        points = await _drainer(conn, *ledger)()
        verifications = await _verifications(conn, limit)
        return Folded(members=members, ledger=points, verifications=verifications, moves=moved)
    members_done = asyncio.Event()
    moved = 0

    async def first() -> tuple[int, int]:
        nonlocal moved
        try:
            members = await _drainer(conn, MEMBER_QUEUE, "member_id", _FOLD_MEMBERS, limit)()
            moved = await moves()
        finally:
            members_done.set()  # the ledger folds never run beside a member or a move fold
        return members, await _drainer(conn, *ledger, half=0)()

    async def second(other: Conn) -> tuple[int, int]:
        verifications = await _verifications(other, limit)
        await members_done.wait()
        return verifications, await _drainer(other, *ledger, half=1)()

    (members, even), (verifications, odd) = await asyncio.gather(first(), second(other))
    rest = await _drainer(conn, *ledger)()
    return Folded(
        members=members, ledger=even + odd + rest, verifications=verifications, moves=moved
    )


async def rollup_alone(
    conn: Conn, *, wait: bool = False, limit: int = BATCH, other: Conn | None = None
) -> Folded | None:
    """``rollup`` with one roller at a time across processes; ``None`` when another roller is
    running and ``wait`` is false. ``conn`` (and ``other``) should be in autocommit mode."""
    return await run_alone(
        conn, Lock.PEOPLE_ROLLUP, lambda: rollup(conn, limit, other=other), wait=wait
    )


async def rollup_count(conn: Conn, *, wait: bool = False) -> int | None:
    """``rollup_alone`` for the periodic worker and the CLI: the queue rows consumed."""
    folded = await rollup_alone(conn, wait=wait)
    if folded is None:
        return None
    return folded.members + folded.ledger + folded.verifications + folded.moves


# -- recount -------------------------------------------------------------------------------------


class Mismatch(msgspec.Struct, frozen=True, kw_only=True):
    """A summary cell that differs from the count of its source rows: the table, the cell's key
    and both values (as PostgreSQL prints rows)."""

    table: str
    key: str
    recorded: str
    expected: str


_LEVELS = "(VALUES (0, '', ''), (1, p.province, ''), (2, p.province, p.city))"
_BAND = "CASE WHEN m.birthday IS NULL THEN coalesce(m.age_band, '') ELSE '' END"

# Where each member is counted (``n``: 1 a member, 0 an erased membership — its points only):
# as it is now, an erased one where the facts say it was last counted (its region, birthday and
# band are gone; the facts keep the birthday's month, ``_ERASED_PLACE``), or, while a change of
# it waits in the queue, as the facts say it was counted (when it was): ``_FOLD_MEMBERS``' rules.
_PLACED = f"""
placed AS (
    SELECT m.id AS member_id, m.brand_id, (m.created_at AT TIME ZONE '{TZ}')::date AS day,
           coalesce(m.province, '') AS province, coalesce(m.city, '') AS city,
           coalesce(m.birthday, 'infinity') AS birthday, {_BAND} AS age_band, 1 AS n
    FROM members m
    WHERE m.status <> 'erased'
      AND NOT EXISTS (SELECT 1 FROM analytics_member_queue q WHERE q.member_id = m.id)
    UNION ALL
    SELECT m.id, m.brand_id,
           coalesce(f.reg_day, (m.created_at AT TIME ZONE '{TZ}')::date), '', '',
           date_trunc('month', coalesce(f.birthday, m.birthday, 'infinity'))::date,
           coalesce(f.age_band, {_BAND}), 0
    FROM members m
         LEFT JOIN analytics_member_facts f ON f.member_id = m.id AND f.reg_day IS NOT NULL
    WHERE m.status = 'erased'
      AND NOT EXISTS (SELECT 1 FROM analytics_member_queue q WHERE q.member_id = m.id)
    UNION ALL
    SELECT f.member_id, f.brand_id, f.reg_day, f.province, f.city, f.birthday, f.age_band,
           CASE WHEN f.erased THEN 0 ELSE 1 END
    FROM analytics_member_facts f JOIN analytics_member_queue q USING (member_id)
    WHERE f.reg_day IS NOT NULL
)"""
_FOLDED_LEDGER = """
folded AS (
    SELECT l.* FROM points_ledger l
    WHERE NOT EXISTS (SELECT 1 FROM analytics_ledger_queue q WHERE q.ledger_id = l.id)
)"""


def _compare(table: str, keys: str, values: str, expected: str) -> str:
    """The cells where ``table`` and the ``expected`` CTE (same key and value columns) differ."""
    key_list = [k.strip() for k in keys.split(",")]
    value_list = [v.strip() for v in values.split(",")]
    recorded = ", ".join(f"coalesce(r.{v}, 0)" for v in value_list)
    wanted = ", ".join(f"coalesce(e.{v}, 0)" for v in value_list)
    return f"""
SELECT '{table}' AS "table", row({", ".join(key_list)})::text AS key,
       row({recorded})::text AS recorded, row({wanted})::text AS expected
FROM {expected} e FULL JOIN {table} r USING ({keys})
WHERE row({recorded}) IS DISTINCT FROM row({wanted})"""


def _compare_both(table: str, keys: str, day: str, values: str) -> str:
    """``_compare`` of the day summary ``table`` with the ``expected`` CTE and of its month
    summary (``table``_m) with the same expectation summed by month: one statement."""
    value_list = [v.strip() for v in values.split(",")]
    sums = ", ".join(f"sum({v}) AS {v}" for v in value_list)
    return f""", expected_m AS (
    SELECT {keys}, date_trunc('month', {day})::date AS month, {sums}
    FROM expected GROUP BY {keys}, month
)
SELECT * FROM ({_compare(table, f"{keys}, {day}", values, "expected")}
    UNION ALL {_compare(f"{table}_m", f"{keys}, month", values, "expected_m")}
) found ORDER BY 1, 2"""


_RECOUNT_REGIONS = f"""
WITH {_PLACED}, expected AS (
    SELECT p.brand_id, v.level, v.province, v.city, p.day, count(*) AS members
    FROM placed p, LATERAL {_LEVELS} AS v(level, province, city)
    WHERE p.n = 1
    GROUP BY 1, 2, 3, 4, 5
)""" + _compare_both(
    "analytics_member_regions", "brand_id, level, province, city", "day", "members"
)

_POINTS = "claimed, redeemed, expired, adjusted, balance"
_RECOUNT_AGES = (
    f"""
WITH {_PLACED}, {_FOLDED_LEDGER}, pts AS (
    SELECT member_id,
           -- a draw's points prize (``app.draws``) is claimed points too: the columns add up
           coalesce(sum(points) FILTER (WHERE kind IN ('claim', 'draw')), 0) AS claimed,
           coalesce(-sum(points) FILTER (WHERE kind IN ('redemption', 'refund')), 0) AS redeemed,
           coalesce(-sum(points) FILTER (WHERE kind = 'expiry'), 0) AS expired,
           coalesce(sum(points) FILTER (WHERE kind = 'adjustment'), 0) AS adjusted,
           sum(points) AS balance
    FROM folded GROUP BY 1
), expected AS (
    SELECT p.brand_id, p.birthday, p.age_band, sum(p.n) AS members,
           coalesce(sum(claimed), 0) AS claimed, coalesce(sum(redeemed), 0) AS redeemed,
           coalesce(sum(expired), 0) AS expired, coalesce(sum(adjusted), 0) AS adjusted,
           coalesce(sum(balance), 0) AS balance
    FROM placed p LEFT JOIN pts USING (member_id) GROUP BY 1, 2, 3
)"""
    # the birthdays' months too: ``GET /analytics/points/ages`` reads them (probe O)
    + _compare_both(
        "analytics_points_ages", "brand_id, age_band", "birthday", f"members, {_POINTS}"
    )
)

_CYCLE_VALUES = "pairs, purchases, span_days, repeaters, f1, f2, f3_5, f6_10, f11"
_RECOUNT_CYCLE = f"""
WITH {_FOLDED_LEDGER}, bought AS (
    SELECT c.member_id, c.brand_id, c.product_id, p.category_id,
           (c.claimed_at AT TIME ZONE '{TZ}')::date AS day
    FROM folded l JOIN point_claims c ON c.id = l.claim_id
         JOIN {_COUNTED} p ON p.product_id = c.product_id
    WHERE l.kind = 'claim'
), pair AS (
    SELECT b.member_id, b.brand_id, s.kind, s.subject_id, count(*) AS n,
           max(b.day) - min(b.day) AS span, max(b.day) AS last_day
    FROM bought b, LATERAL (VALUES ('a'::"char", 0::bigint), ('p', b.product_id),
                                   ('c', b.category_id)) AS s(kind, subject_id)
    WHERE s.subject_id IS NOT NULL
    GROUP BY 1, 2, 3, 4
), expected AS (
    SELECT brand_id, kind, subject_id, last_day, count(*) AS pairs, sum(n) AS purchases,
           sum(span) AS span_days, count(*) FILTER (WHERE n >= 2) AS repeaters,
           count(*) FILTER (WHERE n = 1) AS f1, count(*) FILTER (WHERE n = 2) AS f2,
           count(*) FILTER (WHERE n BETWEEN 3 AND 5) AS f3_5,
           count(*) FILTER (WHERE n BETWEEN 6 AND 10) AS f6_10,
           count(*) FILTER (WHERE n > 10) AS f11
    FROM pair GROUP BY 1, 2, 3, 4
)""" + _compare_both("analytics_cycle", "brand_id, kind, subject_id", "last_day", _CYCLE_VALUES)

# The verifications less those still queued (the queue rows are counts, folded as they are).
_RECOUNT_VERIFY = f"""
WITH src AS (
    SELECT brand_id, (at AT TIME ZONE '{TZ}')::date AS day, product_id,
           coalesce(province, '') AS province, coalesce(city, '') AS city, result, count(*) AS n
    FROM verifications WHERE brand_id IS NOT NULL AND {NOT_RETRY} GROUP BY 1, 2, 3, 4, 5, 6
    UNION ALL
    SELECT brand_id, day, product_id, province, city, result, -n FROM analytics_verify_queue
), expected AS (
    SELECT s.brand_id, c.product_id, c.level, c.province, c.city, s.day, sum(s.n) AS total,
           {_COUNTS.replace("sum(n)", "sum(s.n)")}
    FROM src s, LATERAL {_VERIFY_CELLS}
    WHERE c.product_id IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5, 6
)""" + _compare_both(
    "analytics_verifications",
    "brand_id, product_id, level, province, city",
    "day",
    f"total, {_RESULT_COLUMNS}",
)

RECOUNTS = (_RECOUNT_REGIONS, _RECOUNT_AGES, _RECOUNT_CYCLE, _RECOUNT_VERIFY)


async def recount(conn: Conn) -> list[Mismatch]:
    """Every cell of the four people summaries that differs from a count of the members, the
    points ledger, the claims and the verifications (what is still queued taken into account;
    one statement, one snapshot, per summary)."""
    found: list[Mismatch] = []
    for sql in RECOUNTS:
        rows = await (await conn.execute(sql)).fetchall()  # type: ignore[arg-type]
        found.extend(Mismatch(**row) for row in rows)
    return found
