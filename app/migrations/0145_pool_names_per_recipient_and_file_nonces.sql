-- A pool's name was unique in its brand (migration 0029), yet a printer or partner sees only the
-- pools shared with its own organisation (app.codes.allocations._pool_where): a printer's key
-- creating a pool under the name of a brand pool it cannot see got 409 pool_name_taken — an
-- oracle of the names of pools it may not see, and a name it took first refused the planner's
-- pool of that name (a probe). A name is now unique among the pools of one recipient (the
-- organisation a pool is shared with; NULL, the brand's unshared pools, counts as one
-- recipient): a printer or partner only ever clashes with a pool it sees, brand staff see all.
ALTER TABLE code_pools DROP CONSTRAINT code_pools_brand_id_name_key;
ALTER TABLE code_pools ADD CONSTRAINT code_pools_brand_recipient_name_key
    UNIQUE NULLS NOT DISTINCT (brand_id, recipient_org_id, name);

-- An allocation's file is made again for every fetch under the same data key (derived from the
-- allocation id); its 4-byte GCM nonce prefix was random, so after ~2^16 fetches of one
-- allocation two were likely to share it. The prefix is now the number of files made of the
-- allocation (app.codes.allocation_records.again): distinct for 2^32 files, in the TCPF1
-- format its readers already open. Allocations made before start at 0.
ALTER TABLE code_allocations ADD COLUMN files_made bigint NOT NULL DEFAULT 0;
