"""Named permissions and the built-in roles made of them (SPEC U2, U3)."""

from __future__ import annotations

PERMISSIONS: dict[str, str] = {
    "platform.admin": "create brands (tenants)",
    "orgs.read": "read organisations of the own subtree",
    "orgs.write": "create, update, move and deactivate organisations of the own subtree",
    "users.read": "read users of the own subtree",
    "users.write": "create and change users of the own subtree",
    "roles.write": "create and change custom roles",
    "apikeys.write": "create and revoke API keys for partner systems",
    "audit.read": "read the audit log of the own subtree",
    "catalog.read": "read categories and products",
    "catalog.write": "create and change categories and products",
    "codes.issue": "issue code batches",
    "codes.export": "export printer files",
    "codes.download": "download printer files addressed to the own organisation",
    "codes.allocate": "allocate serials of the brand's batches and pools (an API key: of the pools "
    "shared with its organisation) for line systems and serialization servers",
    "packing.scan": "activate and aggregate codes on a packing line",
    "epcis.capture": "capture EPCIS 2.0 documents (events naming the brand's codes change their "
    "state under the line API's rules)",
    "logistics.scan": "inbound, outbound and returns by scanning",
    "logistics.approve": "approve exception outbound",
    "orders.write": "create and import orders",
    "inspect.scan": "inspect goods on store shelves",
    "field.visit": "plan and record visits to the stores below one's organisation: own visit "
    "plans, check-ins, reviews, photos",
    "field.supervise": "approve or return the visit plans of the reps one supervises; see their "
    "check-ins, reviews and photos",
    "field.read": "read and export every field rep's plans, check-ins and reviews (subtree)",
    "field.nameplates": "print stores' nameplates (signed QR codes) and set the positions of "
    "the stores below one's organisation",
    "sales.claim": "claim sales rebates",
    "reports.read": "read reports and analytics",
    "alerts.read": "read and acknowledge alerts",
    "verify.b2b": "verify product identifiers (GTIN, serial, lot, expiry) before accepting goods: "
    "a trade partner's receiving system (GS1 Lightweight Messaging, /v1/lms/verify)",
    "fraud.review": "review fraud holds: put members and store clerks on hold, release (credit) "
    "or confirm (reject) their held claims",
    "sms.campaigns": "SMS templates, campaigns and marketing opt-outs of the own brand",
    "members.read": "read and export the brand's members and their scans (brand staff only)",
    "members.write": "freeze and unfreeze members",
    "members.read_phone": "see members' whole phone numbers (others see 138****1234)",
    "points.rules": "set the points of products (per channel agent); adjust members' points",
    "gifts.write": "create and change the gifts members redeem points for",
    "draws.write": "run lucky draw campaigns (扫码抽奖): prizes, stock, odds; read their results "
    "and hand over their prizes",
    "content.write": "write the brand story (品牌介绍) shown on the phone site",
    "promotions.write": "create and change the promotions members see in their province",
    "complaints.handle": "read, take, answer and close consumers' complaints and suggestions",
    "wechat.manage": "set the brand's WeChat service account (app id, secret, template ids); "
    "read its template messages' delivery log",
    "redemptions.fulfil": "check and fulfil redemption codes (customer service, store staff)",
    "redemptions.read": "read redemptions and the stores' settlement (within the subtree)",
    "rebates.rules": "set the sales rebate of products (per channel agent)",
    "rebates.read": "read sales rebates, rankings and statements (within the subtree)",
    "rebates.settle": "generate, approve, pay and reject stores' rebate statements",
    "webhooks.manage": "subscribe endpoints to the own subtree's events (webhooks); read their "
    "delivery log, replay deliveries, rotate secrets",
}

_ADMIN = [p for p in PERMISSIONS if p != "platform.admin"]
_READ = ["orgs.read", "catalog.read"]
# Held at brand level only (an organisation's admin cannot grant them): issuing and allocating
# codes, owning the catalogue, the member directory.
_BRAND_ONLY = {
    "codes.issue",
    "codes.export",
    "codes.download",
    "codes.allocate",
    "catalog.write",
    "members.read",
    "members.write",
    "members.read_phone",
    "points.rules",
    "gifts.write",
    "draws.write",
    "content.write",
    "promotions.write",
    "complaints.handle",
    "wechat.manage",
    "rebates.rules",
    "rebates.settle",
    "fraud.review",
}

BUILTIN_ROLES: dict[str, tuple[str, list[str]]] = {
    "platform_admin": ("operates the platform; creates brands", list(PERMISSIONS)),
    "brand_admin": ("administers a brand and everything below it", _ADMIN),
    "org_admin": (
        "administers one organisation and its subtree, and its day-to-day operations",
        [p for p in _ADMIN if p not in _BRAND_ONLY],
    ),
    "planner": (
        "issues code batches and printer files",
        [*_READ, "codes.issue", "codes.export", "codes.allocate"],
    ),
    "printer": (
        "a printing company downloading its files and allocating serials",
        ["codes.download", "codes.allocate"],
    ),
    "line_operator": (
        "activates and packs on a line",
        [*_READ, "packing.scan", "epcis.capture"],
    ),
    "warehouse_clerk": ("scans inbound, outbound and returns", [*_READ, "logistics.scan"]),
    "approver": ("approves exception outbound", [*_READ, "logistics.approve"]),
    "inspector": ("inspects store shelves for diversion", [*_READ, "inspect.scan"]),
    "field_rep": ("visits stores", [*_READ, "field.visit"]),
    "field_supervisor": (
        "approves field reps' visit plans and follows their visits; prints store nameplates",
        [*_READ, "field.visit", "field.supervise", "field.nameplates"],
    ),
    "store_clerk": (
        "sells, claims rebates, hands out members' gifts",
        [
            *_READ,
            "logistics.scan",
            "sales.claim",
            "redemptions.fulfil",
            "redemptions.read",
            "rebates.read",
        ],
    ),
    "analyst": (
        "reads reports",
        [*_READ, "reports.read", "alerts.read", "audit.read", "rebates.read"],
    ),
    "finance": (
        "settles the stores' sales rebates: statements approved, paid or rejected",
        [*_READ, "reports.read", "rebates.read", "rebates.settle"],
    ),
    "partner": (
        "a partner ERP system: orders, products and organisations by ERP code, webhooks",
        [*_READ, "orders.write", "catalog.write", "orgs.write", "webhooks.manage", "epcis.capture"],
    ),
    "marketing": (
        "sends SMS campaigns; manages templates and opt-outs; publishes promotions and the "
        "brand story; sets the WeChat service account",
        [
            *_READ,
            "sms.campaigns",
            "promotions.write",
            "content.write",
            "wechat.manage",
            "draws.write",
        ],
    ),
    "member_service": (
        "customer service: finds members (phones masked), freezes them, handles complaints",
        [*_READ, "members.read", "members.write", "complaints.handle"],
    ),
    "voucher_service": (
        "e-shop customer service: checks and fulfils members' voucher codes",
        [*_READ, "redemptions.fulfil", "redemptions.read"],
    ),
}
