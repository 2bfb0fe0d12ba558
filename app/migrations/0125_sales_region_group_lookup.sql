-- sales_region_group() (migration 0036) found a group with IS NOT DISTINCT FROM on its six key
-- columns, which no index serves: every call scanned sales_region_groups, which gains two rows
-- per agent of every brand (the orgs trigger's call: 0.23 ms at 100 agents, 1.45 ms at 3,900 —
-- an ERP import of agents slowed down as it went, bench/RESULTS.md). An index on the same key
-- with each NULL written as a value no code, name or id holds (U+0001: the API refuses control
-- characters; -1) serves the lookup below; the UNIQUE constraint stays the key.
CREATE INDEX sales_region_groups_lookup_idx ON sales_region_groups (
    city, coalesce(province_code, E'\x01'), coalesce(province_name, E'\x01'),
    coalesce(city_code, E'\x01'), coalesce(city_name, E'\x01'), coalesce(agent_id, -1));

CREATE OR REPLACE FUNCTION sales_region_group(c boolean, pc char(6), pn text, cc char(6), cn text,
                                              ag bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    g bigint;
BEGIN
    SELECT id INTO g FROM sales_region_groups
    WHERE city = c AND coalesce(province_code, E'\x01') = coalesce(pc, E'\x01')
      AND coalesce(province_name, E'\x01') = coalesce(pn, E'\x01')
      AND coalesce(city_code, E'\x01') = coalesce(cc, E'\x01')
      AND coalesce(city_name, E'\x01') = coalesce(cn, E'\x01')
      AND coalesce(agent_id, -1) = coalesce(ag, -1);
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
