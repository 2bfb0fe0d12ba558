export default {
  'zh-CN': {
    content: {
      menu: { story: '品牌介绍' },
      title: '标题',
      titleHint: '留空时显示品牌名称',
      html: '内容（HTML）',
      htmlHint:
        '可用标签：p、br、strong、em、b、i、u、h2、h3、ul、ol、li、blockquote、a（http/https 链接）、img（http/https 图片）。其他标签、属性和脚本在保存时会被去除。',
      preview: '保存后的效果（手机端显示的内容）',
      empty: '尚未填写品牌介绍',
      version: '版本 {version}',
      openPhone: '在手机端查看',
      changed: '品牌介绍已被他人修改，已载入最新版本，请在此基础上重新编辑。',
    },
  },
  en: {
    content: {
      menu: { story: 'Brand story' },
      title: 'Title',
      titleHint: "Empty: the brand's name",
      html: 'Content (HTML)',
      htmlHint:
        'Allowed: p, br, strong, em, b, i, u, h2, h3, ul, ol, li, blockquote, a (http/https links), img (http/https pictures). Other tags, attributes and scripts are removed when saved.',
      preview: 'As saved (what phones show)',
      empty: 'No brand story yet',
      version: 'Version {version}',
      openPhone: 'Open on the phone site',
      changed: 'Someone else saved the story meanwhile: the latest version is loaded, edit from it.',
    },
  },
}
