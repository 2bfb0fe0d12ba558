export default {
  'zh-CN': {
    apikeys: {
      menu: 'API 密钥',
      name: '名称',
      prefix: '前缀',
      org: '所属组织',
      permissions: '权限',
      lastUsed: '最近使用',
      revoked: '已吊销',
      revoke: '吊销',
      create: '新建密钥',
      secretTitle: '密钥已创建',
      secretOnce: '请立即复制并妥善保存：此密钥只显示这一次。',
      confirmRevoke: '吊销密钥「{name}」？使用它的系统将立即无法访问。',
    },
  },
  en: {
    apikeys: {
      menu: 'API keys',
      name: 'Name',
      prefix: 'Prefix',
      org: 'Organisation',
      permissions: 'Permissions',
      lastUsed: 'Last used',
      revoked: 'Revoked',
      revoke: 'Revoke',
      create: 'New key',
      secretTitle: 'Key created',
      secretOnce: 'Copy it now and keep it safe: this key is shown only once.',
      confirmRevoke: 'Revoke the key “{name}”? Systems using it lose access at once.',
    },
  },
}
