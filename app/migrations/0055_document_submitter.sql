-- Who confirmed a document that waits for approval (an exception outbound): its approver must
-- be a third person's eyes, neither the handler who drafted it nor the one who sent it on
-- (review R5: an admin confirmed a clerk's draft and approved it).
ALTER TABLE documents ADD COLUMN submitted_by bigint REFERENCES users (id);
