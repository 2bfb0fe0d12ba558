// The province-level divisions as the API stores members' and promotions' provinces (their full
// Chinese name, app/members/profile.py PROVINCES), with the English name shown in English.
export interface Province {
  name: string
  en: string
}

export const PROVINCES: readonly Province[] = [
  { name: '北京市', en: 'Beijing' },
  { name: '天津市', en: 'Tianjin' },
  { name: '河北省', en: 'Hebei' },
  { name: '山西省', en: 'Shanxi' },
  { name: '内蒙古自治区', en: 'Inner Mongolia' },
  { name: '辽宁省', en: 'Liaoning' },
  { name: '吉林省', en: 'Jilin' },
  { name: '黑龙江省', en: 'Heilongjiang' },
  { name: '上海市', en: 'Shanghai' },
  { name: '江苏省', en: 'Jiangsu' },
  { name: '浙江省', en: 'Zhejiang' },
  { name: '安徽省', en: 'Anhui' },
  { name: '福建省', en: 'Fujian' },
  { name: '江西省', en: 'Jiangxi' },
  { name: '山东省', en: 'Shandong' },
  { name: '河南省', en: 'Henan' },
  { name: '湖北省', en: 'Hubei' },
  { name: '湖南省', en: 'Hunan' },
  { name: '广东省', en: 'Guangdong' },
  { name: '广西壮族自治区', en: 'Guangxi' },
  { name: '海南省', en: 'Hainan' },
  { name: '重庆市', en: 'Chongqing' },
  { name: '四川省', en: 'Sichuan' },
  { name: '贵州省', en: 'Guizhou' },
  { name: '云南省', en: 'Yunnan' },
  { name: '西藏自治区', en: 'Tibet' },
  { name: '陕西省', en: 'Shaanxi' },
  { name: '甘肃省', en: 'Gansu' },
  { name: '青海省', en: 'Qinghai' },
  { name: '宁夏回族自治区', en: 'Ningxia' },
  { name: '新疆维吾尔自治区', en: 'Xinjiang' },
  { name: '台湾省', en: 'Taiwan' },
  { name: '香港特别行政区', en: 'Hong Kong' },
  { name: '澳门特别行政区', en: 'Macao' },
]

/** A stored province as the reader reads it: its English name in English. */
export function provinceLabel(name: string, locale: string): string {
  if (locale !== 'en') return name
  return PROVINCES.find((p) => p.name === name)?.en ?? name
}
