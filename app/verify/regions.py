"""Coarse location of a verification: province (and city) from client GPS or the client's IP.

GPS wins: the nearest provincial capital within 600 km names the province, except that Hong Kong
and Macao name only a point inside their own outlines (``SAR_OUTLINES``): Shenzhen and Zhuhai,
nearer Hong Kong's and Macao's centres than Guangzhou, are Guangdong. Without GPS the IP is
looked up in a CIDR table; the shipped ``ip_regions.csv`` is a small demonstration table (the
documentation ranges of RFC 5737 and a few others). A deployment points
``TRACECODE_IP_REGIONS_FILE`` at a full table of the same format: ``cidr,province,city`` and,
optionally, the two names in English: ``cidr,province,city,province_en,city_en``.

Places are recorded (and compared) by their Chinese label; ``place_name`` names them in the
reader's language (an English message says "in Hangzhou, Zhejiang", not "in 浙江省杭州市").
"""

from __future__ import annotations

import bisect
import csv
import ipaddress
import math
from functools import cache, lru_cache
from pathlib import Path

import msgspec

from app.provinces import CAPITALS

MAX_KM = 600.0

# The two special administrative regions' rough outlines (lat, lng), drawn along the land and
# sea boundaries with Shenzhen and Zhuhai (within ~1 km): a mainland point nearest their
# centres is not in them (a probe: a scan in Shenzhen's Futian was recorded in Hong Kong, and a
# buyer's check there after one in Guangzhou answered ``region_jump``).
SAR_OUTLINES: dict[str, list[tuple[float, float]]] = {
    "香港特别行政区": [
        (22.46, 113.90),  # Urmston Road, west of Tuen Mun
        (22.505, 113.96),  # Deep Bay, east of Shekou
        (22.515, 114.03),  # Lok Ma Chau, then the Shenzhen River
        (22.52, 114.08),
        (22.535, 114.11),  # Lo Wu
        (22.54, 114.15),
        (22.555, 114.22),  # Sha Tau Kok
        (22.50, 114.30),  # Mirs Bay
        (22.52, 114.45),
        (22.35, 114.50),
        (22.15, 114.35),
        (22.13, 113.90),
        (22.20, 113.82),  # west of Lantau
        (22.40, 113.84),
    ],
    "澳门特别行政区": [
        (22.217, 113.528),  # the Barrier Gate, Gongbei to the north
        (22.218, 113.555),
        (22.20, 113.565),
        (22.16, 113.60),
        (22.11, 113.60),
        (22.11, 113.55),  # Coloane; Hengqin to the west
        (22.15, 113.545),
        (22.18, 113.533),
    ],
}


class Place(msgspec.Struct, frozen=True):
    province: str
    city: str | None = None
    lat: float | None = None
    lng: float | None = None

    @property
    def label(self) -> str:
        return (
            self.province
            if not self.city or self.city == self.province
            else self.province + self.city
        )


def english(province: str, city: str | None, province_en: str, city_en: str | None) -> str:
    """A place in English: ``Shanghai``, ``Hangzhou, Zhejiang`` (the province when the city's
    English name is not known)."""
    if not city or city == province:
        return province_en
    return f"{city_en}, {province_en}" if city_en else province_en


# Chinese label (``Place.label``) → English name: the capitals, and the IP table's rows that
# give English names (``IpTable.load`` adds them).
_ENGLISH: dict[str, str] = {}
_PROVINCES_EN: dict[str, str] = {}


def _learn(province: str, city: str | None, province_en: str, city_en: str | None) -> None:
    if province_en:
        _PROVINCES_EN.setdefault(province, province_en)
        _ENGLISH[Place(province, city).label] = english(province, city, province_en, city_en)


for _p, _c, _, _, _pe, _ce in CAPITALS:
    _learn(_p, None, _pe, None)
    _learn(_p, _c, _pe, _ce)


def place_name(label: str, lang: str) -> str:
    """A place's label (Chinese, as recorded) in the reader's language. An English reader gets
    the English name; for a label no table names in English, the province's English name when
    the label starts with a known province, else the label as recorded."""
    if lang != "en" or not label:
        return label
    found = _ENGLISH.get(label)
    if found is not None:
        return found
    for province, province_en in _PROVINCES_EN.items():
        if label.startswith(province):
            return province_en
    return label


def _km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 12742.0 * math.asin(math.sqrt(a))


def _inside(lat: float, lng: float, outline: list[tuple[float, float]]) -> bool:
    """Whether the point is inside the polygon (even-odd rule)."""
    inside = False
    j = len(outline) - 1
    for i, (lat_i, lng_i) in enumerate(outline):
        lat_j, lng_j = outline[j]
        if (lat_i > lat) != (lat_j > lat) and lng < lng_i + (lat - lat_i) * (lng_j - lng_i) / (
            lat_j - lat_i
        ):
            inside = not inside
        j = i
    return inside


def from_gps(lat: float, lng: float) -> Place | None:
    distance, province, city = min((_km(lat, lng, la, ln), p, c) for p, c, la, ln, *_ in CAPITALS)
    if province in SAR_OUTLINES and not _inside(lat, lng, SAR_OUTLINES[province]):
        distance, province, city = min(  # near Hong Kong or Macao, outside: the mainland's
            (_km(lat, lng, la, ln), p, c) for p, c, la, ln, *_ in CAPITALS if p not in SAR_OUTLINES
        )
    if distance > MAX_KM:
        return None
    return Place(province, city if distance < 60 else None, round(lat, 3), round(lng, 3))


class IpTable:
    """Sorted IPv4 ranges → (province, city); lookups by bisection, an IPv4-mapped IPv6
    address's as its IPv4 address's (as ``client_bucket`` counts it)."""

    def __init__(self, rows: list[tuple[str, ...]]) -> None:
        ranges = []
        for cidr, province, city, *names in rows:
            if len(names) == 2:
                _learn(province, city or None, names[0].strip(), names[1].strip() or None)
            net = ipaddress.ip_network(cidr.strip(), strict=False)
            if net.version == 4:
                ranges.append(
                    (int(net.network_address), int(net.broadcast_address), province, city)
                )
        ranges.sort()
        self._starts = [r[0] for r in ranges]
        self._ranges = ranges

    @classmethod
    def load(cls, path: Path) -> IpTable:
        with path.open(encoding="utf-8") as handle:
            rows = [
                (r[0], r[1], r[2] if len(r) > 2 else "", *(r[3:5] if len(r) >= 5 else ()))
                for r in csv.reader(handle)
                if r and not r[0].startswith("#")
            ]
        return cls(rows)

    def lookup(self, ip: str | None) -> Place | None:
        if not ip:
            return None
        return self._lookup(ip)

    @lru_cache(maxsize=65_536)  # noqa: B019 - one table per process, kept for its lifetime
    def _lookup(self, ip: str) -> Place | None:
        """The place of one address (cached: a busy phone network repeats its addresses)."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address):  # a dual-stack listener's IPv4 client
            mapped = address.ipv4_mapped  # (``::ffff:203.0.113.7``, a probe: never placed)
            if mapped is None:
                return None
            address = mapped
        value = int(address)
        i = bisect.bisect_right(self._starts, value) - 1
        if i >= 0 and self._ranges[i][0] <= value <= self._ranges[i][1]:
            _, _, province, city = self._ranges[i]
            return Place(province, city or None)
        return None


@cache
def ip_table(path: str | None) -> IpTable:
    """The table of ``TRACECODE_IP_REGIONS_FILE`` (or the bundled one), read once per process;
    ``ValueError`` when it is not one (``app.main`` reads it at start-up)."""
    try:
        return IpTable.load(Path(path) if path else Path(__file__).with_name("ip_regions.csv"))
    except (OSError, UnicodeDecodeError, ValueError, IndexError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else f"not a CIDR table ({exc})"
        raise ValueError(f"TRACECODE_IP_REGIONS_FILE={path}: {reason}") from None


def locate(
    lat: float | None, lng: float | None, ip: str | None, table_path: str | None
) -> Place | None:
    if lat is not None and lng is not None:
        place = from_gps(lat, lng)
        if place is not None:
            return place
    return ip_table(table_path).lookup(ip)
