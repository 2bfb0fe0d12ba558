-- An export's inner file (the PINs, `seq,pin` lines) keeps no digest of its plain text: the
-- SHA-256 of a short export's lines gave its PINs back by trying every PIN, without the master
-- key (app.codes.exports._SECRET_PARTS). The digests kept so far are dropped.
UPDATE code_exports SET files = files #- '{inner,plain_sha256}'
 WHERE files -> 'inner' ? 'plain_sha256';
