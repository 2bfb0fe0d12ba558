-- A member's marketing switch says what the brand's opt-out list does (app.sms.service): a
-- phone on the list signs up opted out, and switching marketing back on takes it off the list.
-- Members who signed up from a listed phone before that (a former member's number, a store
-- manager's who had answered TD) were shown opted in while every campaign skipped them: their
-- switch is set from the list.
UPDATE members m SET marketing_opt_out = true
  FROM sms_opt_outs o
 WHERE o.brand_id = m.brand_id AND o.phone = m.phone
   AND NOT m.marketing_opt_out AND m.status <> 'erased';
