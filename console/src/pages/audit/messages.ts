export default {
  'zh-CN': {
    audit: {
      menu: '审计日志',
      at: '时间',
      actor: '操作人',
      actorKey: 'API 密钥',
      org: '组织',
      action: '动作',
      entity: '对象',
      entityId: '对象 ID',
      requestId: '请求 ID',
      before: '修改前',
      after: '修改后',
    },
  },
  en: {
    audit: {
      menu: 'Audit log',
      at: 'Time',
      actor: 'User',
      actorKey: 'API key',
      org: 'Organisation',
      action: 'Action',
      entity: 'Entity',
      entityId: 'Entity id',
      requestId: 'Request id',
      before: 'Before',
      after: 'After',
    },
  },
}
