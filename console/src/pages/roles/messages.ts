export default {
  'zh-CN': {
    roles: {
      menu: '角色权限',
      name: '角色名',
      description: '说明',
      permissions: '权限',
      builtin: '内置',
      custom: '自定义',
      create: '新建角色',
      edit: '编辑角色',
      nameRule: '小写字母开头，可含数字和下划线',
      confirmDelete: '删除角色「{name}」？',
    },
  },
  en: {
    roles: {
      menu: 'Roles',
      name: 'Name',
      description: 'Description',
      permissions: 'Permissions',
      builtin: 'Built-in',
      custom: 'Custom',
      create: 'New role',
      edit: 'Edit role',
      nameRule: 'a lower-case letter first, then letters, digits, underscores',
      confirmDelete: 'Delete the role “{name}”?',
    },
  },
}
