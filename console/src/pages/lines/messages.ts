export default {
  'zh-CN': {
    lines: {
      menu: '包装线',
      code: '产线',
      org: '工厂',
      product: '当前产品',
      lot: '批号',
      productionDate: '生产日期',
      hint: '各产线当前生产的产品、批号和生产日期;上传结果(含拒收)由产线扫码端逐条显示。',
    },
  },
  en: {
    lines: {
      menu: 'Packing lines',
      code: 'Line',
      org: 'Factory',
      product: 'Product now',
      lot: 'Lot',
      productionDate: 'Production date',
      hint: "What each line produces now (product, lot, production date); each upload's results, rejections included, are shown item by item on the line's scanner.",
    },
  },
}
