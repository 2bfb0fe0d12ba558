-- An exception outbound's approver writes why it was approved or rejected (L4). That note was
-- written over the document's own note — the requester's reasons, gone once decided. It has its
-- own column now; documents decided before keep what their note holds (the decision's words
-- where one was given: the requester's are not recoverable).
ALTER TABLE documents ADD COLUMN decision_note text NOT NULL DEFAULT '';
