-- An organisation's ERP code is unique within its brand, not across every brand: a SaaS operator
-- hosts many brands, each with its own ERP and its own codes ("SH001" in two brands is two
-- stores). The brand is the first id of the path. While an organisation is being created its
-- path is '' until the same transaction sets it (app/orgs/service.py), so a second creation of
-- the same code waits for the first to commit and is then compared under the real path.
ALTER TABLE orgs DROP CONSTRAINT orgs_erp_code_key;
CREATE UNIQUE INDEX orgs_erp_code_brand_uq ON orgs (erp_code, (split_part(path, '/', 2)));
-- A brand's own code is unique among brands (the platform operator's list of tenants).
CREATE UNIQUE INDEX orgs_brand_erp_code_uq ON orgs (erp_code) WHERE kind = 'brand';
