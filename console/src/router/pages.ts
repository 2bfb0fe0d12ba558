// Every page of the console, in menu order: its route, its menu entry and the permission that
// shows it (any of a list). Adding a page = a file under src/pages/<area>/ + one entry here
// (+ its words in src/pages/<area>/messages.ts). Pages load lazily, each its own chunk.
import type { Component } from 'vue'
import {
  Document,
  HomeFilled,
  Key,
  OfficeBuilding,
  User,
  UserFilled,
} from '@element-plus/icons-vue'
import { Bell, Box, Files, Goods, List, Position, Stamp, Tickets, View } from '@element-plus/icons-vue'
import { DataAnalysis, Histogram, PieChart, TrendCharts } from '@element-plus/icons-vue'
import { Coin, Money, Medal, Tickets as TicketsIcon, Warning } from '@element-plus/icons-vue'
import { Avatar, Present, ShoppingBag } from '@element-plus/icons-vue'
import { CircleCheck } from '@element-plus/icons-vue'
import { Lock } from '@element-plus/icons-vue'
import { Trophy as DrawIcon } from '@element-plus/icons-vue'
import { DocumentChecked } from '@element-plus/icons-vue'
import { ChatLineSquare, Promotion } from '@element-plus/icons-vue'
import { Reading } from '@element-plus/icons-vue'
import { ChatDotRound } from '@element-plus/icons-vue'
import { Message } from '@element-plus/icons-vue'
import { Calendar, Location, Postcard, Star } from '@element-plus/icons-vue'
import { CollectionTag, Menu as MenuIcon, Picture, Trophy } from '@element-plus/icons-vue'

/** Menu groups, in order; a group shows when the user may open one of its pages. */
export const GROUPS = ['catalog', 'codes', 'logistics', 'verify', 'members', 'field', 'analytics', 'system'] as const
export type Group = (typeof GROUPS)[number]

export interface PageDef {
  /** Path under /console/, without the leading slash ('' is the home page). */
  path: string
  /** Route name, unique; also the menu item's data-menu attribute (end-to-end tests use it). */
  name: string
  /** i18n key of the menu entry and the page title. */
  title: string
  /** Needed to see the menu entry and open the page: a permission, or any of a list. */
  permission?: string | readonly string[]
  group?: Group
  icon?: Component
  /** true: only the brand organisation's own staff may open it (the API answers 403
   * ``brand_staff_only`` below the brand, whatever the permissions). */
  brandStaff?: boolean
  /** false: a route without a menu entry (a detail page). */
  menu?: boolean
  component: () => Promise<unknown>
}

export const PAGES: PageDef[] = [
  { path: '', name: 'home', title: 'menu.home', icon: HomeFilled, component: () => import('@/pages/home/HomePage.vue') },
  { path: 'catalog/products', name: 'catalog-products', title: 'catalog.menu.products', group: 'catalog', permission: 'catalog.read', icon: CollectionTag, component: () => import('@/pages/catalog/ProductsPage.vue') },
  { path: 'catalog/media', name: 'catalog-media', title: 'catalog.menu.media', group: 'catalog', permission: 'catalog.write', icon: Picture, component: () => import('@/pages/catalog/MediaPage.vue') },
  { path: 'catalog/categories', name: 'catalog-categories', title: 'catalog.menu.categories', group: 'catalog', permission: 'catalog.write', icon: MenuIcon, component: () => import('@/pages/catalog/CategoriesPage.vue') },
  { path: 'batches', name: 'batches', title: 'batches.menu', group: 'codes', permission: 'codes.issue', icon: Tickets, component: () => import('@/pages/batches/BatchesPage.vue') },
  { path: 'lines', name: 'lines', title: 'lines.menu', group: 'codes', permission: 'packing.scan', icon: Box, component: () => import('@/pages/lines/LinesPage.vue') },
  { path: 'trace', name: 'trace', title: 'trace.menu', group: 'codes', permission: 'orgs.read', icon: Position, component: () => import('@/pages/trace/TracePage.vue') },
  { path: 'center/documents', name: 'center-documents', title: 'center.documents', group: 'logistics', permission: ['reports.read', 'logistics.scan'], icon: Files, component: () => import('@/pages/center/DocumentsPage.vue') },
  { path: 'center/stock', name: 'center-stock', title: 'center.stock', group: 'logistics', permission: ['reports.read', 'logistics.scan'], icon: Goods, component: () => import('@/pages/center/StockPage.vue') },
  { path: 'orders', name: 'orders', title: 'center.orders', group: 'logistics', permission: ['logistics.scan', 'logistics.approve', 'orders.write', 'reports.read'], icon: List, component: () => import('@/pages/center/OrdersPage.vue') },
  { path: 'approvals', name: 'approvals', title: 'approvals.menu', group: 'logistics', permission: ['logistics.approve', 'logistics.scan'], icon: Stamp, component: () => import('@/pages/center/ApprovalsPage.vue') },
  { path: 'alerts', name: 'alerts', title: 'alerts.menu', group: 'verify', permission: 'alerts.read', icon: Bell, component: () => import('@/pages/alerts/AlertsPage.vue') },
  { path: 'verifications', name: 'verifications', title: 'verifications.menu', group: 'verify', permission: ['alerts.read', 'reports.read'], icon: DocumentChecked, component: () => import('@/pages/verifications/VerificationsPage.vue') },
  { path: 'inspections', name: 'inspections', title: 'inspections.menu', group: 'verify', permission: ['inspect.scan', 'reports.read'], icon: View, component: () => import('@/pages/inspections/InspectionsPage.vue') },
  { path: 'forensics', name: 'forensics', brandStaff: true, title: 'forensics.menu', group: 'verify', permission: ['fraud.review', 'alerts.read'], icon: Lock, component: () => import('@/pages/forensics/ForensicsPage.vue') },
  { path: 'orgs', name: 'orgs', title: 'orgs.menu', group: 'system', permission: 'orgs.read', icon: OfficeBuilding, component: () => import('@/pages/orgs/OrgsPage.vue') },
  { path: 'users', name: 'users', title: 'users.menu', group: 'system', permission: 'users.read', icon: User, component: () => import('@/pages/users/UsersPage.vue') },
  { path: 'roles', name: 'roles', title: 'roles.menu', group: 'system', permission: ['roles.write', 'users.write'], icon: UserFilled, component: () => import('@/pages/roles/RolesPage.vue') },
  { path: 'api-keys', name: 'api-keys', title: 'apikeys.menu', group: 'system', permission: 'apikeys.write', icon: Key, component: () => import('@/pages/apikeys/ApiKeysPage.vue') },
  { path: 'audit', name: 'audit', title: 'audit.menu', group: 'system', permission: 'audit.read', icon: Document, component: () => import('@/pages/audit/AuditPage.vue') },
  { path: 'analytics/stores', name: 'analytics-stores', title: 'analytics.menu.stores', group: 'analytics', permission: 'reports.read', icon: Histogram, component: () => import('@/pages/analytics/SalesStoresPage.vue') },
  { path: 'analytics/products', name: 'analytics-products', title: 'analytics.menu.products', group: 'analytics', permission: 'reports.read', icon: TrendCharts, component: () => import('@/pages/analytics/SalesProductsPage.vue') },
  { path: 'analytics/regions', name: 'analytics-regions', title: 'analytics.menu.regions', group: 'analytics', permission: 'reports.read', icon: DataAnalysis, component: () => import('@/pages/analytics/SalesRegionsPage.vue') },
  { path: 'analytics/members', name: 'analytics-members', brandStaff: true, title: 'analytics.menu.memberRegions', group: 'analytics', permission: 'reports.read', icon: PieChart, component: () => import('@/pages/analytics/MemberRegionsPage.vue') },
  { path: 'analytics/cycle', name: 'analytics-cycle', brandStaff: true, title: 'analytics.menu.memberCycle', group: 'analytics', permission: 'reports.read', icon: Histogram, component: () => import('@/pages/analytics/MemberCyclePage.vue') },
  { path: 'analytics/points', name: 'analytics-points', brandStaff: true, title: 'analytics.menu.pointsAges', group: 'analytics', permission: 'reports.read', icon: Histogram, component: () => import('@/pages/analytics/PointsAgesPage.vue') },
  { path: 'analytics/verifications', name: 'analytics-verifications', brandStaff: true, title: 'analytics.menu.verifications', group: 'analytics', permission: 'reports.read', icon: TrendCharts, component: () => import('@/pages/analytics/VerificationsPage.vue') },
  { path: 'analytics/inspections', name: 'analytics-inspections', title: 'analytics.menu.inspections', group: 'analytics', permission: 'reports.read', icon: Histogram, component: () => import('@/pages/analytics/InspectionsPage.vue') },
  { path: 'points/rules', name: 'points-rules', brandStaff: true, title: 'points.menu.rules', group: 'members', permission: 'points.rules', icon: Trophy, component: () => import('@/pages/points/RulesPage.vue') },
  { path: 'rebates/rules', name: 'rebates-rules', brandStaff: true, title: 'rebates.menu.rules', group: 'members', permission: 'rebates.rules', icon: Coin, component: () => import('@/pages/rebates/RulesPage.vue') },
  { path: 'rebates/claims', name: 'rebates-claims', title: 'rebates.menu.claims', group: 'members', permission: 'rebates.read', icon: TicketsIcon, component: () => import('@/pages/rebates/ClaimsPage.vue') },
  { path: 'rebates/rankings', name: 'rebates-rankings', title: 'rebates.menu.rankings', group: 'members', permission: 'rebates.read', icon: Medal, component: () => import('@/pages/rebates/RankingsPage.vue') },
  { path: 'rebates/statements', name: 'rebates-statements', title: 'rebates.menu.statements', group: 'members', permission: 'rebates.read', icon: Money, component: () => import('@/pages/rebates/StatementsPage.vue') },
  { path: 'rebates/refusals', name: 'rebates-refusals', title: 'rebates.menu.refusals', group: 'members', permission: 'rebates.read', icon: Warning, component: () => import('@/pages/rebates/RefusalsPage.vue') },
  { path: 'members', name: 'members', brandStaff: true, title: 'members.menu.members', group: 'members', permission: 'members.read', icon: Avatar, component: () => import('@/pages/members/MembersPage.vue') },
  { path: 'gifts', name: 'gifts', brandStaff: true, title: 'members.menu.gifts', group: 'members', permission: 'gifts.write', icon: Present, component: () => import('@/pages/members/GiftsPage.vue') },
  { path: 'draws', name: 'draws', brandStaff: true, title: 'draws.menu', group: 'members', permission: 'draws.write', icon: DrawIcon, component: () => import('@/pages/draws/DrawsPage.vue') },
  { path: 'promotions', name: 'promotions', brandStaff: true, title: 'marketing.menu.promotions', group: 'members', permission: 'promotions.write', icon: Promotion, component: () => import('@/pages/marketing/PromotionsPage.vue') },
  { path: 'complaints', name: 'complaints', brandStaff: true, title: 'marketing.menu.complaints', group: 'members', permission: 'complaints.handle', icon: ChatLineSquare, component: () => import('@/pages/marketing/ComplaintsPage.vue') },
  { path: 'content/story', name: 'brand-story', brandStaff: true, title: 'content.menu.story', group: 'members', permission: 'content.write', icon: Reading, component: () => import('@/pages/content/StoryPage.vue') },
  { path: 'wechat', name: 'wechat', brandStaff: true, title: 'wechat.menu.wechat', group: 'members', permission: 'wechat.manage', icon: ChatDotRound, component: () => import('@/pages/wechat/WechatPage.vue') },
  { path: 'sms', name: 'sms', title: 'sms.menu', group: 'members', permission: 'sms.campaigns', icon: Message, component: () => import('@/pages/sms/SmsPage.vue') },
  { path: 'field/nameplates', name: 'field-nameplates', title: 'fieldforce.menu.nameplates', group: 'field', permission: 'field.nameplates', icon: Postcard, component: () => import('@/pages/field/NameplatesPage.vue') },
  { path: 'field/plans', name: 'field-plans', title: 'fieldforce.menu.plans', group: 'field', permission: ['field.visit', 'field.supervise', 'field.read'], icon: Calendar, component: () => import('@/pages/field/PlansPage.vue') },
  { path: 'field/checkins', name: 'field-checkins', title: 'fieldforce.menu.checkins', group: 'field', permission: ['field.visit', 'field.supervise', 'field.read'], icon: Location, component: () => import('@/pages/field/CheckinsPage.vue') },
  { path: 'field/reviews', name: 'field-reviews', title: 'fieldforce.menu.reviews', group: 'field', permission: ['field.visit', 'field.supervise', 'field.read'], icon: Star, component: () => import('@/pages/field/ReviewsPage.vue') },
  { path: 'redemptions', name: 'redemptions', title: 'members.menu.redemptions', group: 'members', permission: 'redemptions.read', icon: ShoppingBag, component: () => import('@/pages/members/RedemptionsPage.vue') },
  { path: 'redemptions/verify', name: 'redemption-verify', title: 'members.menu.verify', group: 'members', permission: 'redemptions.fulfil', icon: CircleCheck, component: () => import('@/pages/members/VerifyPage.vue') },
]
