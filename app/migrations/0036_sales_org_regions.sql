-- Sales analytics (issue 17): each organisation's region and agent, kept as it changes, so the
-- regions report (A3) and the store ranking (A1) no longer work out every store's nearest agent
-- and group 2,000 stores by their province, city and agent names on each request.
--
-- sales_region_groups: one row per (province, agent) (``city`` false, no city) and per
-- (province, city, agent) (``city`` true) that any organisation has had; never deleted (a group
-- no store is in any more has no sales and is not reported).
-- sales_org_regions: per organisation, its nearest agent (itself when it is one, else the
-- deepest agent among its ancestors; NULL: none) and its two groups. A trigger on orgs keeps it
-- in the transaction that changes an organisation: its row on insert and on a change of path,
-- region or kind (a subtree move updates every row of the subtree, each row recomputed after
-- the statement); a change of kind also recomputes the subtree below it. Reports read the names
-- (the agent's, the regions') from these rows and orgs when asked: a store moved to another
-- agent or region reports under the new one, as before. app/analytics/sales.py's
-- ``region_drift`` proves the table equals a recomputation from orgs.

CREATE TABLE sales_region_groups (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    city          boolean NOT NULL,
    province_code char(6),
    province_name text,
    city_code     char(6),
    city_name     text,
    agent_id      bigint,
    UNIQUE NULLS NOT DISTINCT (city, province_code, province_name, city_code, city_name, agent_id)
);

CREATE TABLE sales_org_regions (
    org_id         bigint PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
    agent_id       bigint,
    province_group bigint NOT NULL REFERENCES sales_region_groups (id),
    city_group     bigint NOT NULL REFERENCES sales_region_groups (id)
);

-- The id of a group, made when first seen.
CREATE FUNCTION sales_region_group(c boolean, pc char(6), pn text, cc char(6), cn text, ag bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    g bigint;
BEGIN
    SELECT id INTO g FROM sales_region_groups
    WHERE city = c AND province_code IS NOT DISTINCT FROM pc
      AND province_name IS NOT DISTINCT FROM pn AND city_code IS NOT DISTINCT FROM cc
      AND city_name IS NOT DISTINCT FROM cn AND agent_id IS NOT DISTINCT FROM ag;
    IF g IS NULL THEN
        INSERT INTO sales_region_groups (city, province_code, province_name, city_code, city_name,
                                         agent_id)
        VALUES (c, pc, pn, cc, cn, ag)
        ON CONFLICT (city, province_code, province_name, city_code, city_name, agent_id)
        DO UPDATE SET city = EXCLUDED.city
        RETURNING id INTO g;
    END IF;
    RETURN g;
END $$;

-- Recompute the rows of the organisations whose path starts with ``prefix`` (one organisation:
-- its own path).
CREATE FUNCTION sales_org_regions_refresh(prefix text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sales_org_regions AS t (org_id, agent_id, province_group, city_group)
    SELECT o.id, ag.id,
           sales_region_group(false, o.province_code, o.province_name, NULL, NULL, ag.id),
           sales_region_group(true, o.province_code, o.province_name, o.city_code, o.city_name,
                              ag.id)
    FROM orgs o
    LEFT JOIN LATERAL (
        SELECT a.id FROM orgs a
        WHERE a.id = ANY(string_to_array(trim(both '/' from o.path), '/')::bigint[])
          AND a.kind = 'agent'
        ORDER BY length(a.path) DESC LIMIT 1
    ) ag ON true
    WHERE o.path LIKE prefix || '%'
    ORDER BY o.id
    ON CONFLICT (org_id) DO UPDATE
    SET agent_id = EXCLUDED.agent_id, province_group = EXCLUDED.province_group,
        city_group = EXCLUDED.city_group
    WHERE (t.agent_id, t.province_group, t.city_group)
          IS DISTINCT FROM (EXCLUDED.agent_id, EXCLUDED.province_group, EXCLUDED.city_group);
END $$;

CREATE FUNCTION sales_org_regions_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.kind IS DISTINCT FROM NEW.kind AND NEW.path <> '' THEN
        PERFORM sales_org_regions_refresh(NEW.path);  -- the subtree's nearest agent may change
    ELSIF NEW.path = '' THEN  -- inserted, its path not set yet: no agent
        INSERT INTO sales_org_regions AS t (org_id, agent_id, province_group, city_group)
        VALUES (NEW.id, NULL,
                sales_region_group(false, NEW.province_code, NEW.province_name, NULL, NULL, NULL),
                sales_region_group(true, NEW.province_code, NEW.province_name, NEW.city_code,
                                   NEW.city_name, NULL))
        ON CONFLICT (org_id) DO UPDATE
        SET agent_id = EXCLUDED.agent_id, province_group = EXCLUDED.province_group,
            city_group = EXCLUDED.city_group;
    ELSE
        -- this organisation only (its path is its own: no other path starts with it but its
        -- subtree's, whose rows a move updates too); the LIKE is exact on '/1/2/'-style paths
        INSERT INTO sales_org_regions AS t (org_id, agent_id, province_group, city_group)
        SELECT NEW.id, ag.id,
               sales_region_group(false, NEW.province_code, NEW.province_name, NULL, NULL, ag.id),
               sales_region_group(true, NEW.province_code, NEW.province_name, NEW.city_code,
                                  NEW.city_name, ag.id)
        FROM (SELECT 1) one
        LEFT JOIN LATERAL (
            SELECT a.id FROM orgs a
            WHERE a.id = ANY(string_to_array(trim(both '/' from NEW.path), '/')::bigint[])
              AND a.kind = 'agent'
            ORDER BY length(a.path) DESC LIMIT 1
        ) ag ON true
        ON CONFLICT (org_id) DO UPDATE
        SET agent_id = EXCLUDED.agent_id, province_group = EXCLUDED.province_group,
            city_group = EXCLUDED.city_group
        WHERE (t.agent_id, t.province_group, t.city_group)
              IS DISTINCT FROM (EXCLUDED.agent_id, EXCLUDED.province_group, EXCLUDED.city_group);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER orgs_sales_regions
AFTER INSERT OR UPDATE OF path, kind, province_code, province_name, city_code, city_name ON orgs
FOR EACH ROW EXECUTE FUNCTION sales_org_regions_keep();

SELECT sales_org_regions_refresh('');
