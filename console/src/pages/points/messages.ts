export default {
  'zh-CN': {
    points: {
      menu: { rules: '积分规则' },
      product: '产品',
      agent: '渠道组织',
      default: '默认（所有渠道）',
      points: '积分',
      pointsRule: '积分须为 0 到 1000000 的整数',
      productRequired: '请选择产品',
      setRule: '设置积分规则',
      deleteConfirm: '删除「{product}」在「{agent}」的积分规则？',
      hint: '会员扫码领取积分时按单品首次发往的组织（或其上级）的规则计算，没有则按产品的默认规则；0 表示不积分。',
    },
  },
  en: {
    points: {
      menu: { rules: 'Points rules' },
      product: 'Product',
      agent: 'Channel organisation',
      default: 'Default (every channel)',
      points: 'Points',
      pointsRule: 'Points are a whole number from 0 to 1000000',
      productRequired: 'Choose a product',
      setRule: 'Set a points rule',
      deleteConfirm: 'Delete the points rule of "{product}" for "{agent}"?',
      hint: 'A member’s claim earns the rule of the organisation the unit was first shipped to (or the nearest above it with one), else the product’s default; 0 earns nothing.',
    },
  },
}
