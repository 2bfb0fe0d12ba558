-- What the returns made before migration 0073 could not take back: each wrote its audit row
-- (app.members.returns: the claim's points as "claimed", those taken back as "points"); the
-- returns since record what they owe themselves (their rows say "owed"). A probe: migrated
-- with nothing owed, a gift code bought with a refunded sale's points expired and gave them
-- back. (A migration of its own: 0073 had landed, and an edited one stops every database that
-- ran it.)
UPDATE point_balances b SET owed = b.owed + o.owed
  FROM (SELECT (after ->> 'member_id')::bigint AS member_id,
               sum((after ->> 'claimed')::integer - (after ->> 'points')::integer) AS owed
          FROM audit_log
         WHERE entity = 'point_claim' AND action = 'withdraw' AND NOT after ? 'owed'
           AND (after ->> 'claimed')::integer > (after ->> 'points')::integer
         GROUP BY 1) o
 WHERE b.member_id = o.member_id;
