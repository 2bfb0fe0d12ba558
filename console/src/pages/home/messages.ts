export default {
  'zh-CN': {
    dashboard: {
      title: '数据看板',
      today: '{day}（北京时间）',
      refresh: '刷新',
      sum14: '近 14 天合计 {n}',
      figures: {
        verifications: '今日验证',
        counterfeits: '今日假码',
        diversions: '今日窜货',
        activations: '今日激活',
        shipments: '今日发货',
        low_stock: '库存预警',
      },
    },
  },
  en: {
    dashboard: {
      title: 'Dashboard',
      today: '{day} (China time)',
      refresh: 'Refresh',
      sum14: '{n} over the last 14 days',
      figures: {
        verifications: 'Verifications today',
        counterfeits: 'Counterfeits today',
        diversions: 'Diversions today',
        activations: 'Activations today',
        shipments: 'Shipments today',
        low_stock: 'Low-stock alerts',
      },
    },
  },
}
