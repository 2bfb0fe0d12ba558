"""China's province-level divisions (GB/T 2260): their names as members', verifications' and
organisations' provinces are stored, the spellings people write them in, their codes and their
capitals; ``query_province`` reads a query's province filter by them. Every domain reads it
(``app.verify.regions`` places a scan by its capitals).
"""

from __future__ import annotations

import re

from app.errors import ValidationFailed

# Province (GB/T 2260 name), its capital, the capital's coordinates, and both names in English.
CAPITALS: list[tuple[str, str, float, float, str, str]] = [
    ("北京市", "北京市", 39.90, 116.40, "Beijing", "Beijing"),
    ("天津市", "天津市", 39.13, 117.20, "Tianjin", "Tianjin"),
    ("河北省", "石家庄市", 38.04, 114.51, "Hebei", "Shijiazhuang"),
    ("山西省", "太原市", 37.87, 112.55, "Shanxi", "Taiyuan"),
    ("内蒙古自治区", "呼和浩特市", 40.84, 111.75, "Inner Mongolia", "Hohhot"),
    ("辽宁省", "沈阳市", 41.80, 123.43, "Liaoning", "Shenyang"),
    ("吉林省", "长春市", 43.82, 125.32, "Jilin", "Changchun"),
    ("黑龙江省", "哈尔滨市", 45.80, 126.53, "Heilongjiang", "Harbin"),
    ("上海市", "上海市", 31.23, 121.47, "Shanghai", "Shanghai"),
    ("江苏省", "南京市", 32.06, 118.80, "Jiangsu", "Nanjing"),
    ("浙江省", "杭州市", 30.27, 120.15, "Zhejiang", "Hangzhou"),
    ("安徽省", "合肥市", 31.82, 117.23, "Anhui", "Hefei"),
    ("福建省", "福州市", 26.07, 119.30, "Fujian", "Fuzhou"),
    ("江西省", "南昌市", 28.68, 115.86, "Jiangxi", "Nanchang"),
    ("山东省", "济南市", 36.65, 117.12, "Shandong", "Jinan"),
    ("河南省", "郑州市", 34.75, 113.63, "Henan", "Zhengzhou"),
    ("湖北省", "武汉市", 30.59, 114.31, "Hubei", "Wuhan"),
    ("湖南省", "长沙市", 28.23, 112.94, "Hunan", "Changsha"),
    ("广东省", "广州市", 23.13, 113.26, "Guangdong", "Guangzhou"),
    ("广西壮族自治区", "南宁市", 22.82, 108.37, "Guangxi", "Nanning"),
    ("海南省", "海口市", 20.04, 110.20, "Hainan", "Haikou"),
    ("重庆市", "重庆市", 29.56, 106.55, "Chongqing", "Chongqing"),
    ("四川省", "成都市", 30.57, 104.07, "Sichuan", "Chengdu"),
    ("贵州省", "贵阳市", 26.65, 106.63, "Guizhou", "Guiyang"),
    ("云南省", "昆明市", 25.04, 102.71, "Yunnan", "Kunming"),
    ("西藏自治区", "拉萨市", 29.65, 91.14, "Tibet", "Lhasa"),
    ("陕西省", "西安市", 34.34, 108.94, "Shaanxi", "Xi'an"),
    ("甘肃省", "兰州市", 36.06, 103.83, "Gansu", "Lanzhou"),
    ("青海省", "西宁市", 36.62, 101.78, "Qinghai", "Xining"),
    ("宁夏回族自治区", "银川市", 38.49, 106.23, "Ningxia", "Yinchuan"),
    ("新疆维吾尔自治区", "乌鲁木齐市", 43.83, 87.62, "Xinjiang", "Urumqi"),
    ("台湾省", "台北市", 25.03, 121.57, "Taiwan", "Taipei"),
    ("香港特别行政区", "香港", 22.32, 114.17, "Hong Kong", "Hong Kong"),
    ("澳门特别行政区", "澳门", 22.20, 113.54, "Macao", "Macao"),
]

_SUFFIX = re.compile("(壮族自治区|回族自治区|维吾尔自治区|自治区|特别行政区|省|市)$")
# the provinces by full name, by short name as people write it (``浙江``, ``广西``, ``香港``) and
# in English (case folded): their full Chinese name, as members' and verifications' are stored
PROVINCES: dict[str, str] = (
    {name: name for name, *_ in CAPITALS}
    | {_SUFFIX.sub("", name): name for name, *_ in CAPITALS}
    | {en.casefold(): name for name, _, _, _, en, _ in CAPITALS}
)
# GB/T 2260: a province-level division's code (its first two digits) and its full name
PROVINCE_CODES: dict[str, str] = {
    "11": "北京市", "12": "天津市", "13": "河北省", "14": "山西省", "15": "内蒙古自治区",
    "21": "辽宁省", "22": "吉林省", "23": "黑龙江省", "31": "上海市", "32": "江苏省",
    "33": "浙江省", "34": "安徽省", "35": "福建省", "36": "江西省", "37": "山东省",
    "41": "河南省", "42": "湖北省", "43": "湖南省", "44": "广东省", "45": "广西壮族自治区",
    "46": "海南省", "50": "重庆市", "51": "四川省", "52": "贵州省", "53": "云南省",
    "54": "西藏自治区", "61": "陕西省", "62": "甘肃省", "63": "青海省", "64": "宁夏回族自治区",
    "65": "新疆维吾尔自治区", "71": "台湾省", "81": "香港特别行政区", "82": "澳门特别行政区",
}  # fmt: skip
# and the other way: a province's full name and its 6-digit code (浙江省: 330000)
CODE_OF: dict[str, str] = {name: f"{code}0000" for code, name in PROVINCE_CODES.items()}


def province_named(text: str) -> str | None:
    """A province's full name (浙江省) from any way it is written — full, short (浙江), English
    in any case (Zhejiang), or its 6-digit GB/T 2260 code (330000) —; None for none."""
    text = text.strip()
    if len(text) == 6 and text.isascii() and text.isdigit():
        return PROVINCE_CODES.get(text[:2]) if text.endswith("0000") else None
    return PROVINCES.get(text.casefold())


def query_province(text: str) -> str:
    """A query's ``province`` filter (the lists', the analytics') as provinces are stored, its
    full name; an unknown one is 400 ``validation_failed`` on the query's ``province`` (a probe:
    the analytics answered a misspelt province with zeros, as if it had none)."""
    province = province_named(text)
    if province is None:
        raise ValidationFailed(
            "invalid request (province): not a province-level division of China",
            details=[{"field": "province", "message": "unknown province", "source": "query"}],
        )
    return province
