-- Members' personal information in the features built after the erasure and the retention
-- (app/members/erasure.py, app/retention.py): fraud holds (0111) and WeChat messages (0107).
--
-- * The erasure of a member finds the member's holds (its evidence loses the client address and
--   user agent; its held claims and draws are rejected) by the party, of any state: the only
--   index on the party was the open holds'.
-- * The retention sweep clears the evidence's client address and user agent, and a finished
--   WeChat message's openid, data and link, past their days. These partial indexes hold just the
--   rows still holding them: a sweep reads what it clears (and the few not yet due), never the
--   years already cleared, with no mark to keep.

CREATE INDEX fraud_holds_member_idx ON fraud_holds (party_id) WHERE party_kind = 'member';
CREATE INDEX fraud_holds_client_idx ON fraud_holds (created_at)
    WHERE evidence ? 'client_ip' OR evidence ? 'user_agent';
CREATE INDEX wechat_messages_payload_idx ON wechat_messages (created_at)
    WHERE openid IS NOT NULL OR data <> '{}'::jsonb OR url IS NOT NULL;

-- The audit rows of holds recorded the hold whole, its evidence's client address and user agent
-- included (app.forensics.holds now leaves them out): the rows written before lose them too.
UPDATE audit_log
   SET before = CASE WHEN jsonb_typeof(before -> 'evidence') = 'object'
                     THEN jsonb_set(before, '{evidence}',
                                    (before -> 'evidence') - 'client_ip' - 'user_agent')
                     ELSE before END,
       after = CASE WHEN jsonb_typeof(after -> 'evidence') = 'object'
                    THEN jsonb_set(after, '{evidence}',
                                   (after -> 'evidence') - 'client_ip' - 'user_agent')
                    ELSE after END
 WHERE entity = 'fraud_hold'
   AND (before -> 'evidence' ?| ARRAY['client_ip', 'user_agent']
        OR after -> 'evidence' ?| ARRAY['client_ip', 'user_agent']);
