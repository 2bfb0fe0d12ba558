-- The staff app's id of the request that scanned a code into a draft (POST /documents/{id}/codes
-- `client_id`): the same request sent again, its first answer lost, answers `added` again for the
-- codes it added, not `duplicate`. NULL: sent without one (such a code is a duplicate to any
-- request). Read only for a request's duplicates, by the document's primary key.
ALTER TABLE document_items ADD COLUMN client_id text;
