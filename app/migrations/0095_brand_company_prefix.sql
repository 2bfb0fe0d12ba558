-- A GS1 company prefix per brand (a probe): an SSCC is extension digit + company prefix + serial
-- reference + check digit, and the prefix names the GS1 member that owns the case code. Every
-- brand's case batches took the one platform-wide TRACECODE_GS1_COMPANY_PREFIX, so a second
-- brand's pallets carried the first brand's prefix. A brand now has its own (set by the platform
-- operator); a brand without one still takes the platform's (a single-brand deployment as
-- before). Only brands have one; 6-12 digits, as GS1 allocates them and as
-- TRACECODE_GS1_COMPANY_PREFIX and case_batches.company_prefix are checked; one brand's only.
-- Case batches keep the prefix they were issued under (case_batches.company_prefix).
ALTER TABLE orgs ADD COLUMN gs1_company_prefix text
    CHECK (gs1_company_prefix IS NULL
           OR (gs1_company_prefix ~ '^[0-9]{6,12}$' AND kind = 'brand'));
CREATE UNIQUE INDEX orgs_gs1_company_prefix_uq ON orgs (gs1_company_prefix)
    WHERE gs1_company_prefix IS NOT NULL;
-- Whose case batches a company prefix carries (a brand without a prefix of its own takes the
-- platform's only while no other brand's batches carry it: app.codes.cases).
CREATE INDEX case_batches_company_prefix_idx ON case_batches (company_prefix, brand_id);
