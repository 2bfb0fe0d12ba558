"""The page language (Chinese by default, English on request) and the pages' own words."""

from __future__ import annotations

from typing import Any, Literal

from litestar import Request

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")
COOKIE = "tc_lang"

# Words of the pages themselves; verification answers come from app.verify.messages.
WORDS: dict[str, dict[Lang, str]] = {
    "site": {"zh": "正品验证", "en": "Authenticity check"},
    "switch": {"zh": "English", "en": "中文"},
    "verify_title": {"zh": "防伪查询", "en": "Verify your product"},
    "product_title": {"zh": "产品信息", "en": "Product information"},
    "serial": {"zh": "防伪码", "en": "Code"},
    "lot": {"zh": "批号", "en": "Lot"},
    "production_date": {"zh": "生产日期", "en": "Production date"},
    "spec": {"zh": "规格", "en": "Size"},
    "category": {"zh": "类别", "en": "Category"},
    "type": {"zh": "类型", "en": "Type"},
    "colour": {"zh": "色号", "en": "Shade"},
    "efficacy": {"zh": "功效", "en": "Benefits"},
    "brand": {"zh": "品牌", "en": "Brand"},
    "gtin": {"zh": "商品条码", "en": "GTIN"},
    "video": {"zh": "观看产品视频", "en": "Watch the product video"},
    "product_link": {"zh": "查看产品详情", "en": "Product details"},
    "pin_label": {
        "zh": "请输入包装内刮开的验证码",
        "en": "Enter the PIN hidden inside the pack",
    },
    "pin_hint": {"zh": "{n} 位数字", "en": "{n} digits"},
    "submit": {"zh": "验证真伪", "en": "Verify"},
    "again": {"zh": "重新输入验证码", "en": "Enter the PIN again"},
    "bad_pin": {
        "zh": "验证码应为 {n} 位数字，请核对后重新输入。",
        "en": "The PIN is {n} digits. Please check it and try again.",
    },
    "genuine": {"zh": "正品", "en": "Genuine"},
    "suspicious": {"zh": "请注意", "en": "Caution"},
    "not_genuine": {"zh": "非正品码", "en": "Not genuine"},
    # a code nobody could read (a link cut short, a stray character): no verdict on the pack
    "unreadable_title": {"zh": "无法识别该码", "en": "Code not recognised"},
    "unreadable": {
        "zh": "无法识别该链接中的码：它可能不完整或多了字符。请用手机重新扫描包装上的二维码。",
        "en": "The code in this link cannot be read: it may be cut short or have a stray "
        "character. Please scan the QR code on the pack again.",
    },
    "unknown_gtin": {
        "zh": "该二维码所标的商品条码未在本平台登记，不是正品码，谨防假冒！",
        "en": "This QR code names a product (GTIN) not registered with us. It is not a genuine "
        "code; beware of a counterfeit.",
    },
    "wrong_pin": {"zh": "验证码错误", "en": "Wrong PIN"},
    "locked": {"zh": "已暂时锁定", "en": "Locked"},
    "queries": {"zh": "查询次数", "en": "Times checked"},
    "first_at": {"zh": "首次查询时间", "en": "First checked"},
    "first_place": {"zh": "首次查询地点", "en": "First checked in"},
    "attempts_left": {"zh": "剩余尝试次数", "en": "Attempts left"},
    "retry_after": {"zh": "请在 {minutes} 分钟后再试", "en": "Try again in {minutes} min"},
    "rate_limited_title": {"zh": "查询过于频繁", "en": "Too many checks"},
    "rate_limited": {
        "zh": "您的查询过于频繁，请 {seconds} 秒后再试。",
        "en": "Too many checks from your network. Please try again in {seconds} s.",
    },
    "not_found_title": {"zh": "未找到", "en": "Not found"},
    "no_product": {
        "zh": "未找到该商品条码对应的产品。",
        "en": "There is no product with this GTIN.",
    },
    "bad_gtin": {
        "zh": "商品条码格式不正确。",
        "en": "That is not a valid GTIN.",
    },
    "error_title": {"zh": "出错了", "en": "Something went wrong"},
    "error": {
        "zh": "请求无法处理，请稍后再试。",
        "en": "The request could not be handled. Please try again later.",
    },
    # -- member pages (app/web/member_pages.py) --
    "member_site": {"zh": "会员中心", "en": "Members"},
    "login_title": {"zh": "会员登录 / 注册", "en": "Sign in or sign up"},
    "login_intro": {
        "zh": "输入手机号，获取短信验证码。首次登录即注册为会员。",
        "en": "Enter your mobile number to get a code by SMS. Signing in the first time makes you "
        "a member.",
    },
    "phone_label": {"zh": "手机号", "en": "Mobile number"},
    "send_code": {"zh": "获取验证码", "en": "Send me a code"},
    "code_label": {"zh": "短信验证码", "en": "Code from the SMS"},
    "code_sent": {
        "zh": "验证码已发送至 {phone}，{minutes} 分钟内有效。",
        "en": "A code was sent to {phone}; it is valid for {minutes} min.",
    },
    "sign_in": {"zh": "登录", "en": "Sign in"},
    "other_phone": {"zh": "换一个手机号", "en": "Use another number"},
    "resend": {"zh": "重新获取验证码", "en": "Send a new code"},
    "sign_out": {"zh": "退出登录", "en": "Sign out"},
    "close_title": {"zh": "注销会员", "en": "Close my membership"},
    "close_explain": {
        "zh": "注销后，您的手机号和个人资料将被删除，积分清零，未使用的兑换码作废，且无法恢复。"
        "您可以随时用同一手机号重新注册，但不会保留原有记录。",
        "en": "Your phone number and profile will be erased, your points forfeited and unused "
        "gift codes cancelled, for good. You may sign up again with the same number later, "
        "as a new member with nothing of this one.",
    },
    "close_confirm": {"zh": "确认注销", "en": "Close it for good"},
    "closed_title": {"zh": "会员已注销", "en": "Membership closed"},
    "closed_message": {
        "zh": "您的个人信息已删除。感谢您的支持。",
        "en": "Your personal information has been erased. Thank you.",
    },
    "no_brand": {
        "zh": "请扫描产品包装上的二维码，在查询结果页登录会员。",
        "en": "Scan the QR code on a product and sign in from its result page.",
    },
    "home_title": {"zh": "我的会员", "en": "My membership"},
    "balance": {"zh": "积分余额", "en": "Points balance"},
    "points_unit": {"zh": "{n} 积分", "en": "{n} points"},
    "nav_home": {"zh": "首页", "en": "Home"},
    "nav_points": {"zh": "积分明细", "en": "Points history"},
    "nav_gifts": {"zh": "积分换礼", "en": "Gifts"},
    "nav_codes": {"zh": "我的兑换码", "en": "My codes"},
    "nav_scans": {"zh": "扫码记录", "en": "My scans"},
    "phone": {"zh": "手机号", "en": "Phone"},
    "frozen_notice": {
        "zh": "您的会员账户已被冻结，暂不能领取积分或兑换礼品。",
        "en": "Your membership is frozen: you cannot claim points or redeem gifts for now.",
    },
    "claim_title": {"zh": "领取积分", "en": "Claim points"},
    "claim_offer": {
        "zh": "会员可领取这件正品的积分，每个防伪码仅可领取一次。",
        "en": "Members earn points for this genuine product; each code earns them once.",
    },
    "claim_button": {"zh": "领取积分", "en": "Claim the points"},
    "claim_sign_in": {"zh": "登录 / 注册后领取积分", "en": "Sign in to claim the points"},
    "claimed": {"zh": "积分已到账", "en": "Points claimed"},
    "claimed_message": {
        "zh": "获得 {points} 积分，当前余额 {balance} 积分。",
        "en": "You earned {points} points; your balance is {balance} points.",
    },
    # a claim made while the member is on hold (app.forensics.holds): status under_review
    "claim_review": {"zh": "领取审核中", "en": "Claim under review"},
    "claim_review_message": {
        "zh": "此码已登记，{points} 积分将在审核通过后到账。",
        "en": "The code is recorded; its {points} points are credited once the claim is reviewed.",
    },
    "ticket_expired": {
        "zh": "领取链接已失效，请重新扫码并输入验证码。",
        "en": "This claim has expired. Scan the code and enter the PIN again.",
    },
    "history_empty": {"zh": "暂无记录。", "en": "Nothing yet."},
    "kind_claim": {"zh": "扫码领取", "en": "Claimed"},
    "kind_redemption": {"zh": "兑换礼品", "en": "Redeemed"},
    "kind_refund": {"zh": "过期退回", "en": "Refunded"},
    "kind_expiry": {"zh": "积分过期", "en": "Expired"},
    "kind_adjustment": {"zh": "积分调整", "en": "Adjustment"},
    "kind_draw": {"zh": "扫码抽奖", "en": "Lucky draw"},
    "reason_return_withdrawn": {
        "zh": "退货：该商品领取的积分已收回",
        "en": "Returned: the points claimed for this product were taken back",
    },
    "reason_return_draw_withdrawn": {
        "zh": "退货：该商品抽奖所得的积分已收回",
        "en": "Returned: the points this product won in a lucky draw were taken back",
    },
    "reason_return_repaid": {
        "zh": "退货：当时未能收回的积分，从退回的积分中扣除",
        "en": "Returned: points a return could not take back, taken from a refund",
    },
    "gifts_title": {"zh": "积分换礼", "en": "Gifts for points"},
    "gift_cost": {"zh": "所需积分", "en": "Points"},
    "gift_stock": {"zh": "库存", "en": "In stock"},
    "gift_online": {"zh": "线上代金券", "en": "E-shop voucher"},
    "gift_offline": {"zh": "门店领取", "en": "Collect at a store"},
    "gift_until": {"zh": "兑换截止", "en": "Offered until"},
    "redeem": {"zh": "立即兑换", "en": "Redeem"},
    "not_enough": {"zh": "积分不足", "en": "Not enough points"},
    "redeemed": {"zh": "兑换成功", "en": "Redeemed"},
    "redeemed_message": {
        "zh": "兑换码已通过短信发送到您的手机，请妥善保管。",
        "en": "Your redemption code was also sent to your phone by SMS. Keep it safe.",
    },
    "code": {"zh": "兑换码", "en": "Code"},
    "how": {"zh": "领取方式", "en": "How to collect"},
    "valid_until": {"zh": "有效期至", "en": "Valid until"},
    "codes_title": {"zh": "我的兑换码", "en": "My redemption codes"},
    "status_issued": {"zh": "待领取", "en": "To collect"},
    "status_fulfilled": {"zh": "已兑换", "en": "Collected"},
    "status_expired": {"zh": "已过期", "en": "Expired"},
    "fulfilled_at": {"zh": "兑换时间", "en": "Collected on"},
    "scans_title": {"zh": "扫码记录", "en": "My scans"},
    "scan_place": {"zh": "地点", "en": "Place"},
    "prev": {"zh": "上一页", "en": "Previous"},
    "next": {"zh": "下一页", "en": "Next"},
    "back_to_gifts": {"zh": "返回礼品列表", "en": "Back to the gifts"},
    "to_home": {"zh": "返回会员首页", "en": "Back to my membership"},
    "result_genuine": {"zh": "正品", "en": "genuine"},
    "result_suspicious": {"zh": "请注意", "en": "caution"},
    "result_not_genuine": {"zh": "非正品", "en": "not genuine"},
    "result_wrong_pin": {"zh": "验证码错误", "en": "wrong PIN"},
    "result_locked": {"zh": "已锁定", "en": "locked"},
    "result_unconfirmed": {"zh": "未输入验证码", "en": "no PIN"},
    # refusals of the member services, by their stable error code
    "err_csrf_failed": {
        "zh": "页面已过期，请返回重新操作。",
        "en": "This page has expired. Please go back and try again.",
    },
    "err_invalid_phone": {
        "zh": "请输入正确的 11 位中国大陆手机号。",
        "en": "Enter a mainland China mobile number (11 digits).",
    },
    "err_otp_wrong": {
        "zh": "验证码错误，还可尝试 {tries_left} 次。",
        "en": "Wrong code; {tries_left} tries left.",
    },
    "err_otp_exhausted": {
        "zh": "验证码错误次数过多，请重新获取验证码。",
        "en": "Too many wrong tries. Ask for a new code.",
    },
    "err_otp_expired": {
        "zh": "验证码已过期，请重新获取。",
        "en": "The code has expired. Ask for a new one.",
    },
    "err_otp_invalid": {
        "zh": "验证码无效，请重新获取。",
        "en": "That code is no longer valid. Ask for a new one.",
    },
    "err_sms_throttled": {
        "zh": "验证码发送过于频繁，请 {seconds} 秒后再试。",
        "en": "A code was sent very recently. Try again in {seconds} s.",
    },
    "err_rate_limited": {
        "zh": "操作过于频繁，请 {seconds} 秒后再试。",
        "en": "Too many attempts. Please try again in {seconds} s.",
    },
    "err_login_locked": {
        "zh": "错误次数过多，请 {seconds} 秒后再试。",
        "en": "Too many wrong codes. Try again in {seconds} s.",
    },
    "err_member_frozen": {
        "zh": "您的会员账户已被冻结，暂不能领取积分或兑换礼品。",
        "en": "Your membership is frozen: you cannot claim points or redeem gifts for now.",
    },
    "err_already_claimed": {
        "zh": "此防伪码的积分已被领取，每个防伪码仅可领取一次。",
        "en": "The points of this code have already been claimed (once per code).",
    },
    "err_claimed_by_another": {
        "zh": "此防伪码已由其他会员领取积分或抽奖，每个防伪码只属于一位会员。",
        "en": "Another member claimed this code's points or drew on it: one member per code.",
    },
    "err_other_brand": {
        "zh": "该产品不属于您所在会员的品牌。",
        "en": "This product is not of your membership's brand.",
    },
    "err_no_points": {"zh": "该产品暂无积分。", "en": "This product earns no points."},
    "err_not_claimable": {
        "zh": "该防伪码不能领取积分。",
        "en": "This code cannot earn points.",
    },
    "err_not_shipped": {
        "zh": "该产品尚未经品牌发往销售渠道，不能领取积分。如在门店购买，请联系品牌客服。",
        "en": "This product was never shipped to a seller by the brand, so it earns no points. "
        "If you bought it in a shop, please contact the brand.",
    },
    "err_insufficient_points": {
        "zh": "积分不足，无法兑换该礼品。",
        "en": "You do not have enough points for this gift.",
    },
    "err_gift_not_offered": {
        "zh": "该礼品当前不可兑换。",
        "en": "This gift is not offered to you now.",
    },
    "err_out_of_stock": {"zh": "该礼品已兑完。", "en": "This gift is out of stock."},
    "err_claim_withdrawn": {
        "zh": "此防伪码的积分已因退货撤回。",
        "en": "The points of this code were withdrawn: the unit was returned.",
    },
    "err_not_sellable": {
        "zh": "此产品已因损坏或过期被退回，不能领取积分。",
        "en": "This unit was returned damaged or expired: it earns no points.",
    },
    "err_not_sold_again": {
        "zh": "此产品已被退回，门店再次售出后方可领取积分。",
        "en": "This unit was returned: it earns points once the store sells it again.",
    },
    "err_client_id_reused": {
        "zh": "此页面已用于另一次操作，请返回重新操作。",
        "en": "This page was already used for another request. Please go back and start again.",
    },
    "err_claim_conflict": {
        "zh": "此防伪码正在被同时领取，请重新领取。",
        "en": "This code was being claimed at the same moment. Please claim it again.",
    },
    "err_member_erased": {
        "zh": "此会员账户已注销。",
        "en": "This membership was closed.",
    },
    "err_not_found": {"zh": "未找到。", "en": "Not found."},
    "code_unreadable": {
        "zh": "兑换码暂时无法显示，请联系客服。",
        "en": "The code cannot be shown now: please contact customer service.",
    },
    "no_page": {
        "zh": "没有这个页面。链接可能不完整，请重新扫描商品上的二维码。",
        "en": "No such page. The link may be cut short: scan the QR code on the pack again.",
    },
    # -- the clerk's rebate pages (app/web/clerk_pages.py) --
    "clerk_site": {"zh": "销售返利", "en": "Sales rebates"},
    "clerk_login_title": {"zh": "店员登录", "en": "Clerk sign-in"},
    "clerk_login_intro": {
        "zh": "使用员工账号登录销售返利系统。",
        "en": "Sign in to the sales rebate system with your staff account.",
    },
    "clerk_username": {"zh": "用户名", "en": "Username"},
    "clerk_password": {"zh": "密码", "en": "Password"},
    "clerk_signed_in_as": {"zh": "当前账号", "en": "Signed in as"},
    "clerk_nav_home": {"zh": "扫码返利", "en": "Scan"},
    "clerk_nav_claims": {"zh": "我的返利", "en": "My rebates"},
    "clerk_step1": {
        "zh": "第一步：扫描产品外包装上的二维码",
        "en": "Step 1: scan the QR code on the product's outer pack",
    },
    "clerk_code_label": {"zh": "外包装二维码或防伪码", "en": "QR code or code on the outer pack"},
    "clerk_code_hint": {
        "zh": "用扫码枪扫描、拍照识别，或手动输入包装上的防伪码。",
        "en": "Use a barcode scanner, take a photo, or type the code printed on the pack.",
    },
    "clerk_camera": {"zh": "拍照识别二维码", "en": "Take a photo of the QR code"},
    "clerk_camera_miss": {
        "zh": "照片中未识别到二维码，请重拍或手动输入。",
        "en": "No QR code was found in the photo: take another or type the code.",
    },
    "clerk_next": {"zh": "下一步", "en": "Next"},
    "clerk_step2": {
        "zh": "第二步：输入产品内包装的验证码",
        "en": "Step 2: enter the PIN inside the product's pack",
    },
    "clerk_pin_label": {"zh": "内包装验证码", "en": "PIN inside the pack"},
    "clerk_claim_button": {
        "zh": "确认销售并领取返利",
        "en": "Record the sale and claim the rebate",
    },
    "clerk_unknown_product": {
        "zh": "未找到此码对应的本品牌产品。",
        "en": "No product of your brand has this code.",
    },
    "clerk_other_code": {"zh": "扫描其他产品", "en": "Scan another product"},
    "clerk_today": {"zh": "今日", "en": "Today"},
    "clerk_month": {"zh": "本月", "en": "This month"},
    "clerk_all_time": {"zh": "累计", "en": "All time"},
    "clerk_count": {"zh": "{n} 件", "en": "{n} sold"},
    "clerk_recent": {"zh": "最近的返利", "en": "Recent rebates"},
    "clerk_all_claims": {"zh": "查看全部返利记录", "en": "All my rebates"},
    "clerk_claims_title": {"zh": "我的返利", "en": "My rebates"},
    "clerk_claimed": {"zh": "返利已记录", "en": "Rebate recorded"},
    "clerk_claimed_message": {
        "zh": "返利 ¥{amount} 已记入您的账户。",
        "en": "A rebate of ¥{amount} is credited to you.",
    },
    "clerk_claim_review": {"zh": "返利审核中", "en": "Rebate under review"},
    "clerk_claim_review_message": {
        "zh": "此码已登记，返利 ¥{amount} 将在审核通过后记入您的账户。",
        "en": "The code is recorded; the rebate of ¥{amount} is credited once it is reviewed.",
    },
    "clerk_sale_recorded": {
        "zh": "已同时登记此产品的销售。",
        "en": "The sale of this unit is recorded.",
    },
    "clerk_sale_known": {
        "zh": "此产品的销售此前已登记。",
        "en": "The sale of this unit had been recorded before.",
    },
    "clerk_scan_next": {"zh": "扫描下一件", "en": "Scan the next one"},
    "clerk_claimed_at": {"zh": "领取时间", "en": "Claimed"},
    "clerk_rebate": {"zh": "返利", "en": "Rebate"},
    "clerk_settlement": {"zh": "结算", "en": "Settlement"},
    "clerk_status_unsettled": {"zh": "未结算", "en": "unsettled"},
    "clerk_status_pending": {"zh": "待审核", "en": "pending"},
    "clerk_status_approved": {"zh": "已审核", "en": "approved"},
    "clerk_status_paid": {"zh": "已支付", "en": "paid"},
    "clerk_status_rejected": {"zh": "已驳回", "en": "rejected"},
    "clerk_relogin": {
        "zh": "登录已过期，请重新登录。",
        "en": "You are signed out. Please sign in again.",
    },
    "clerk_ticket_expired": {
        "zh": "此操作已过期，请重新扫码。",
        "en": "This step has expired: scan the code again.",
    },
    "clerk_bad_code": {
        "zh": "无法识别此码，请核对后重新扫描或输入。",
        "en": "That is not a code we can read: check it, then scan or type it again.",
    },
    "clerk_case_code": {
        "zh": "这是箱码，请扫描单件产品外包装上的二维码。",
        "en": "That is a case code: scan the QR code on a single product's pack.",
    },
    "clerk_forged": {
        "zh": "此码不是本系统签发的防伪码，不是正品。",
        "en": "This code was not issued by us: the product is not genuine.",
    },
    # a link's code with an invisible mark a chat app added (the edge refuses it: app/web/pages.py)
    "clerk_code_hidden": {
        "zh": "链接中的码带有隐藏字符（常由聊天软件加入），无法识别；已为您去除，请核对后继续。",
        "en": "The code in the link held hidden characters (often added by a chat app) and could "
        "not be read; they were taken out. Check it, then go on.",
    },
    # refusals of the rebate claim and of signing in, by their stable error code
    "clerk_err_wrong_pin": {
        "zh": "验证码错误，还可尝试 {n} 次。",
        "en": "Wrong PIN; attempts left: {n}.",
    },
    "clerk_err_locked": {
        "zh": "验证码错误次数过多，此码已锁定，请 {minutes} 分钟后再试。",
        "en": "Too many wrong PINs: this code is locked. Try again in {minutes} min.",
    },
    "clerk_err_not_genuine": {
        "zh": "此码不是有效的正品防伪码，不能领取返利。",
        "en": "This is not a valid genuine code: it earns no rebate.",
    },
    "clerk_err_already_claimed": {
        "zh": "此码的返利已被领取，每个防伪码仅可领取一次。",
        "en": "The rebate of this code has already been claimed (once per code).",
    },
    "clerk_err_wrong_store": {
        "zh": "此产品应在「{name}」销售，不能在本店领取返利。",
        "en": "This unit was supposed to be sold at {name}; it earns no rebate here.",
    },
    "clerk_err_wrong_agent": {
        "zh": "此产品应由「{name}」的门店销售，不能在本店领取返利。",
        "en": "This unit was supposed to be sold by {name}'s stores; it earns no rebate here.",
    },
    "clerk_err_not_delivered": {
        "zh": "此产品未发往本店（记录在「{name}」），不能领取返利。",
        "en": "This unit was not delivered to your store (it is recorded at {name}).",
    },
    "clerk_err_not_received": {
        "zh": "此产品尚在发往本店的途中，请先入库再领取返利。",
        "en": "This unit is still on its way to your store: receive it first.",
    },
    "clerk_err_no_rebate": {"zh": "此产品没有返利。", "en": "This product earns no rebate."},
    "clerk_err_other_brand": {
        "zh": "此产品不属于您的品牌。",
        "en": "This product is not of your brand.",
    },
    "clerk_err_not_claimable": {
        "zh": "此码已作废，不能领取返利。",
        "en": "This code is void: it earns no rebate.",
    },
    "clerk_err_not_a_store": {
        "zh": "只有门店店员可以领取销售返利。",
        "en": "Only a store's clerks claim sales rebates.",
    },
    "clerk_err_forbidden": {
        "zh": "您的账号没有领取销售返利的权限。",
        "en": "Your account may not claim sales rebates.",
    },
    "clerk_err_password_change_required": {
        "zh": "请先在员工 App（/m）或管理后台修改初始密码，再来领取返利。",
        "en": "Change the password you were given first, in the staff app (/m) or the console.",
    },
    "clerk_err_account_inactive": {
        "zh": "账号已停用，请联系管理员。",
        "en": "This account is inactive: ask your administrator.",
    },
    "clerk_err_invalid_credentials": {
        "zh": "用户名或密码错误。",
        "en": "Wrong username or password.",
    },
    "clerk_err_login_locked": {
        "zh": "密码错误次数过多，请 {seconds} 秒后再试。",
        "en": "Too many wrong passwords. Try again in {seconds} s.",
    },
    "clerk_err_rate_limited": {
        "zh": "操作过于频繁，请 {seconds} 秒后再试。",
        "en": "Too many attempts. Please try again in {seconds} s.",
    },
    "clerk_err_retry": {
        "zh": "请重新扫码后再试。",
        "en": "Please scan the code again and retry.",
    },
    # -- the brand's pages and the member's profile (app/web/content_pages.py, profile_form.py) --
    "products_title": {"zh": "产品列表", "en": "Our products"},
    "no_products": {"zh": "暂无产品。", "en": "No products yet."},
    "story_title": {"zh": "品牌介绍", "en": "Our story"},
    "no_story": {"zh": "品牌介绍即将上线，敬请期待。", "en": "Our story is coming soon."},
    "profile_title": {"zh": "个人资料", "en": "My profile"},
    "profile_intro": {
        "zh": "完善资料，获取更适合您的活动与礼品。均为选填。",
        "en": "Tell us more to get offers and gifts that suit you. Every field is optional.",
    },
    "profile_saved": {"zh": "资料已保存。", "en": "Your profile is saved."},
    "profile_save": {"zh": "保存", "en": "Save"},
    "profile_unset": {"zh": "未填写", "en": "Not given"},
    "profile_gender": {"zh": "性别", "en": "Gender"},
    "gender_male": {"zh": "男", "en": "Male"},
    "gender_female": {"zh": "女", "en": "Female"},
    "gender_other": {"zh": "其他", "en": "Other"},
    "profile_birthday": {"zh": "生日", "en": "Birthday"},
    "profile_age_band": {"zh": "年龄段", "en": "Age band"},
    "profile_age_hint": {
        "zh": "填写了生日时，年龄段按生日计算。",
        "en": "With a birthday, the age band follows it.",
    },
    "age_under_18": {"zh": "18 岁以下", "en": "Under 18"},
    "age_18_24": {"zh": "18–24 岁", "en": "18–24"},
    "age_25_34": {"zh": "25–34 岁", "en": "25–34"},
    "age_35_44": {"zh": "35–44 岁", "en": "35–44"},
    "age_45_54": {"zh": "45–54 岁", "en": "45–54"},
    "age_55_plus": {"zh": "55 岁及以上", "en": "55 and over"},
    "profile_email": {"zh": "电子邮箱", "en": "E-mail"},
    "profile_wechat_id": {"zh": "微信号", "en": "WeChat ID"},
    "profile_wechat_hint": {
        "zh": "5–40 位字母、数字、下划线或减号。",
        "en": "5–40 letters, digits, underscores or hyphens.",
    },
    "profile_province": {"zh": "省份", "en": "Province"},
    "profile_city": {"zh": "城市", "en": "City"},
    "profile_opt_out": {"zh": "不接收营销短信", "en": "No marketing text messages"},
    "profile_invalid": {
        "zh": "请检查「{field}」：格式不正确。",
        "en": "Please check \u201c{field}\u201d: it is not valid.",
    },
    "err_age_band_mismatch": {
        "zh": "年龄段与生日不符，请修改其中一项。",
        "en": "The age band does not match the birthday: change one of them.",
    },
    "err_city_without_province": {
        "zh": "填写城市时请同时选择省份。",
        "en": "Choose a province for the city.",
    },
    # -- promotions, complaints and suggestions (app/web/marketing_pages.py) --
    "nav_promotions": {"zh": "促销活动", "en": "Promotions"},
    "nav_complaints": {"zh": "投诉与建议", "en": "Complaints & ideas"},
    "promotions_title": {"zh": "本地促销活动", "en": "Promotions in your region"},
    "promotions_empty": {
        "zh": "您所在地区暂无促销活动。",
        "en": "There are no promotions in your region right now.",
    },
    "promo_starts": {"zh": "开始", "en": "From"},
    "promo_ends": {"zh": "截止", "en": "Until"},
    "promo_link": {"zh": "查看详情", "en": "Find out more"},
    "complaints_title": {"zh": "投诉与建议", "en": "Complaints and suggestions"},
    "complaint_intro": {
        "zh": "对产品或服务有意见或建议？请告诉我们，品牌客服会尽快处理并回复。",
        "en": "Something wrong, or an idea? Tell us: the brand's service team will answer.",
    },
    "complaint_kind": {"zh": "类型", "en": "Kind"},
    "complaint_kind_complaint": {"zh": "投诉", "en": "Complaint"},
    "complaint_kind_suggestion": {"zh": "建议", "en": "Suggestion"},
    "complaint_body": {"zh": "内容", "en": "Your message"},
    "complaint_serial": {"zh": "产品防伪码（选填）", "en": "Code on the pack (optional)"},
    "complaint_store": {"zh": "购买门店（选填）", "en": "Store where you bought it (optional)"},
    "complaint_contact": {"zh": "如何联系您", "en": "How should we reach you"},
    "contact_phone": {"zh": "电话联系我", "en": "Call me"},
    "contact_sms": {"zh": "短信联系我", "en": "Text me"},
    "contact_none": {"zh": "无需联系", "en": "No need to contact me"},
    "complaint_send": {"zh": "提交", "en": "Send"},
    "complaint_sent": {
        "zh": "已收到您的反馈，感谢！处理结果会显示在下方。",
        "en": "Thank you: we have received it. Our answer will show below.",
    },
    "my_complaints": {"zh": "我的反馈", "en": "What I sent"},
    "complaint_status_open": {"zh": "待处理", "en": "Received"},
    "complaint_status_handling": {"zh": "处理中", "en": "Being handled"},
    "complaint_status_closed": {"zh": "已完结", "en": "Closed"},
    "complaint_reply": {"zh": "品牌回复", "en": "Our answer"},
    "complaint_product": {"zh": "产品", "en": "Product"},
    "err_complaint_invalid": {
        "zh": "请填写内容（最多 2000 字），并检查防伪码与门店名称的长度。",
        "en": "Please write your message (up to 2,000 characters) and check the code and store.",
    },
    # a form read_form refuses (app/web/pages.py): not UTF-8, too many fields — no member's
    # mistake to correct, the page's to send again; a control character taken out (complaints)
    "err_malformed_form": {
        "zh": "无法识别提交的内容。请刷新页面，重新填写后提交。",
        "en": "The form sent could not be read. Reload the page, fill it in and send it again.",
    },
    "form_controls_taken_out": {
        "zh": "内容中有无法保存的隐藏字符（常由复制粘贴带入），已为您去除。请检查后重新提交。",
        "en": "Your text held hidden characters that cannot be saved (often pasted with it); "
        "they were taken out. Check it and send it again.",
    },
    # the pages' error page (app/web/pages.py html_error) for a refusal sending again never
    # helps: a form past its size (413), a hidden character (400 invalid_character)
    "err_too_long": {
        "zh": "请求无法处理：提交的内容过长。请删减后重新填写提交。",
        "en": "The request could not be handled: what was sent is too long. Shorten it and fill "
        "in the form again.",
    },
    "err_invalid_character": {
        "zh": "提交的内容中有无法处理的隐藏字符（常由复制粘贴带入）。请重新输入后提交。",
        "en": "What was sent held hidden characters that cannot be handled (often pasted with "
        "it). Type it again and send it.",
    },
    "back_to_form": {"zh": "返回重新填写", "en": "Back to the form"},
    # WeChat sign-in and binding (app/web/wechat_pages.py)
    "wechat_sign_in": {"zh": "微信一键登录", "en": "Sign in with WeChat"},
    "wechat_or": {"zh": "或使用手机号登录", "en": "or sign in with your phone"},
    "wechat_bind_notice": {
        "zh": "请用手机号验证一次，之后即可用微信直接登录。",
        "en": "Sign in with your phone once to link your WeChat; next time WeChat signs you in.",
    },
    "wechat_title": {"zh": "微信", "en": "WeChat"},
    "wechat_state_invalid": {
        "zh": "登录链接已失效或已使用，请重新点击微信登录。",
        "en": "This sign-in link has expired or was used already. Tap Sign in with WeChat again.",
    },
    "wechat_code_invalid": {
        "zh": "微信未能确认您的身份，请重试。",
        "en": "WeChat did not confirm who you are. Please try again.",
    },
    "wechat_unavailable": {
        "zh": "暂时无法连接微信，请稍后再试或使用手机号登录。",
        "en": "WeChat cannot be reached now. Try again later, or sign in with your phone.",
    },
    "wechat_off": {
        "zh": "该品牌未开通微信登录。",
        "en": "This brand does not offer WeChat sign-in.",
    },
    "wechat_linked": {
        "zh": "已绑定微信，可用微信直接登录。",
        "en": "WeChat is linked: it signs you in.",
    },
    "wechat_not_linked": {"zh": "未绑定微信。", "en": "WeChat is not linked."},
    "wechat_link": {"zh": "绑定微信", "en": "Link WeChat"},
    "wechat_unlink": {"zh": "解除微信绑定", "en": "Unlink WeChat"},
    "wechat_unlinked": {"zh": "已解除微信绑定。", "en": "WeChat is unlinked."},
    "wechat_taken": {
        "zh": "该微信已绑定本品牌的其他会员。",
        "en": "This WeChat is linked to another membership of the brand.",
    },
    "footer": {
        "zh": "本页面由品牌方防伪溯源平台提供。",
        "en": "This page is provided by the brand's track-and-trace platform.",
    },
}


def word(key: str, lang: Lang, **values: object) -> str:
    text = WORDS[key][lang]
    return text.format(**values) if values else text


def pick(value: str | None) -> Lang | None:
    """``zh``/``en`` (also ``zh-CN``, ``en-US``…) as a supported language, else None."""
    if not value:
        return None
    primary = value.strip().lower().split("-", 1)[0].split("_", 1)[0]
    return primary if primary in LANGS else None  # type: ignore[return-value]


def from_accept_language(header: str | None) -> Lang | None:
    """The supported language the client ranks highest in ``Accept-Language`` (RFC 9110 q)."""
    best: tuple[float, int, Lang] | None = None
    for position, item in enumerate((header or "").split(",")):
        tag, _, params = item.partition(";")
        lang = pick(tag)
        if lang is None:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        # higher q wins; on a tie the earlier entry wins
        if q > 0 and (best is None or (q, -position) > (best[0], best[1])):
            best = (q, -position, lang)
    return best[2] if best else None


def choose(request: Request[Any, Any, Any], override: str | None = None) -> tuple[Lang, bool]:
    """The page language and whether the visitor chose it now (so it goes into the cookie).

    Order: ``?lang=`` (the switch link), the form's field, the cookie, ``Accept-Language``, zh.
    """
    chosen = pick(request.query_params.get("lang"))
    if chosen:
        return chosen, True
    posted = pick(override)  # the language of the page the form was on: already remembered
    if posted:
        return posted, False
    remembered = pick(request.cookies.get(COOKIE))
    if remembered:
        return remembered, False
    return from_accept_language(request.headers.get("accept-language")) or "zh", False
