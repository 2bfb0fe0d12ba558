-- An organisation's province name was stored as typed ("Zhejiang", "浙江", " zhejiang ") beside
-- its code (330000), or alone with no code; what compares it as text — the SMS store-manager
-- audiences, the draws' provinces, the leak detector's shipped provinces, the ring detector —
-- compares it with the full name members' and verifications' provinces are stored by (浙江省),
-- so such a store was in no province. The API and the ERP import store the code's full name now
-- (app.orgs.service.settled_province, by app.provinces) and a name alone gives its code. This
-- stores the rows kept before alike: a row with a province's code gets its full name; a row with
-- no code whose name is a province's, as app.provinces.province_named reads it (full, short,
-- English in any case, or the code, blanks around it aside), gets that province's full name and
-- code. A row whose code is no province's (refused since), or whose name alone is none, is left
-- as it is. The copies of an organisation's region in sales_region_groups follow by the orgs
-- trigger (migration 0036); the others (alerts' details, the audit log) are records of the time.
WITH province (code, name, spellings) AS (
    VALUES
    ('110000', '北京市', ARRAY['北京', 'beijing']),
    ('120000', '天津市', ARRAY['天津', 'tianjin']),
    ('130000', '河北省', ARRAY['河北', 'hebei']),
    ('140000', '山西省', ARRAY['山西', 'shanxi']),
    ('150000', '内蒙古自治区', ARRAY['内蒙古', 'inner mongolia']),
    ('210000', '辽宁省', ARRAY['辽宁', 'liaoning']),
    ('220000', '吉林省', ARRAY['吉林', 'jilin']),
    ('230000', '黑龙江省', ARRAY['黑龙江', 'heilongjiang']),
    ('310000', '上海市', ARRAY['上海', 'shanghai']),
    ('320000', '江苏省', ARRAY['江苏', 'jiangsu']),
    ('330000', '浙江省', ARRAY['浙江', 'zhejiang']),
    ('340000', '安徽省', ARRAY['安徽', 'anhui']),
    ('350000', '福建省', ARRAY['福建', 'fujian']),
    ('360000', '江西省', ARRAY['江西', 'jiangxi']),
    ('370000', '山东省', ARRAY['山东', 'shandong']),
    ('410000', '河南省', ARRAY['河南', 'henan']),
    ('420000', '湖北省', ARRAY['湖北', 'hubei']),
    ('430000', '湖南省', ARRAY['湖南', 'hunan']),
    ('440000', '广东省', ARRAY['广东', 'guangdong']),
    ('450000', '广西壮族自治区', ARRAY['广西', 'guangxi']),
    ('460000', '海南省', ARRAY['海南', 'hainan']),
    ('500000', '重庆市', ARRAY['重庆', 'chongqing']),
    ('510000', '四川省', ARRAY['四川', 'sichuan']),
    ('520000', '贵州省', ARRAY['贵州', 'guizhou']),
    ('530000', '云南省', ARRAY['云南', 'yunnan']),
    ('540000', '西藏自治区', ARRAY['西藏', 'tibet']),
    ('610000', '陕西省', ARRAY['陕西', 'shaanxi']),
    ('620000', '甘肃省', ARRAY['甘肃', 'gansu']),
    ('630000', '青海省', ARRAY['青海', 'qinghai']),
    ('640000', '宁夏回族自治区', ARRAY['宁夏', 'ningxia']),
    ('650000', '新疆维吾尔自治区', ARRAY['新疆', 'xinjiang']),
    ('710000', '台湾省', ARRAY['台湾', 'taiwan']),
    ('810000', '香港特别行政区', ARRAY['香港', 'hong kong']),
    ('820000', '澳门特别行政区', ARRAY['澳门', 'macao'])
), by_code AS (
    UPDATE orgs o
       SET province_name = p.name
      FROM province p
     WHERE o.province_code = p.code AND o.province_name IS DISTINCT FROM p.name
    RETURNING o.id
)
UPDATE orgs o
   SET province_code = p.code, province_name = p.name
  FROM province p
 WHERE o.province_code IS NULL AND o.province_name IS NOT NULL
   -- the blanks Python's str.strip() takes off
   AND lower(btrim(o.province_name,
                   E' \t\n\r\u000b\f\u001c\u001d\u001e\u001f\u0085\u00a0\u1680\u2000\u2001'
                   || E'\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029'
                   || E'\u202f\u205f\u3000'))
       = ANY (p.spellings || ARRAY[p.name, p.code::text]);
