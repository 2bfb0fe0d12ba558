-- The tamper-evident event log (SPEC B7, app/chain/): a hash chain per brand over the events and
-- their codes, appended after commit by a worker, and signed anchors of its heads.
--
-- The event writer is not touched: each event already records its inserting transaction
-- (``events.xact``, migration 0046; 0 for rows older than that, chained first in id order), and
-- below the transaction horizon the order ``(xact, id)`` is final — the chainer appends in it.

-- An event's codes read by event id, for the chainer and the check: a BRIN index (min/max of
-- event ids per 32 pages), nearly free to keep up on the packing hot path, where a btree would
-- add a second index insert per code row (rows are appended in about event id order).
CREATE INDEX event_codes_event_brin ON event_codes USING brin (event_id)
    WITH (pages_per_range = 32, autosummarize = on);

-- One row per brand: how far its chain has come. ``position`` and ``hash`` are its last link
-- (0 and the genesis hash before the first), ``last_xact``/``last_id`` the (xact, id) of the last
-- event chained: the next link is the first event after it. The chainer locks this row
-- (FOR UPDATE SKIP LOCKED) for each batch, so two chainers never extend one chain at once.
-- No foreign key: an event of a brand whose organisation is gone is chained all the same.
CREATE TABLE event_chain_heads (
    brand_id   bigint PRIMARY KEY,
    position   bigint NOT NULL DEFAULT 0,
    hash       bytea NOT NULL,
    last_xact  xid8 NOT NULL DEFAULT '0',
    last_id    bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    error      text,                            -- why the last pass could not extend it
    error_at   timestamptz
);

-- The links: event ``event_id`` is link ``position`` of its brand's chain, and
-- hash = SHA-256(hash of the link before || canonical bytes of the event with its codes).
CREATE TABLE event_chain (
    event_id  bigint PRIMARY KEY,
    brand_id  bigint NOT NULL,
    position  bigint NOT NULL CHECK (position >= 1),
    hash      bytea NOT NULL CHECK (length(hash) = 32),
    chained_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (brand_id, position)
);

-- Signed heads: "at ``anchored_at`` the chain of ``brand_id`` had ``position`` links, the last
-- hashing to ``hash``", Ed25519-signed under a key derived from the master key (never stored
-- here: a DBA can neither re-sign a rewritten chain nor forge an anchor).
CREATE TABLE event_chain_anchors (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    brand_id    bigint NOT NULL,
    position    bigint NOT NULL CHECK (position >= 1),
    hash        bytea NOT NULL CHECK (length(hash) = 32),
    anchored_at timestamptz NOT NULL,
    key_id      text NOT NULL,                  -- first 16 hex digits of SHA-256(public key)
    signature   bytea NOT NULL CHECK (length(signature) = 64),
    requested_by bigint,                        -- a user's on-demand anchor; null: the worker's
    UNIQUE (brand_id, position)                 -- a head is anchored once, however often asked
);
