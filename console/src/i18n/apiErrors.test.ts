import { describe, expect, it } from 'vitest'

import { errorText, failureText, ZH_CN } from './apiErrors'
import { ApiFailure } from '@/api/errors'

describe('errorText', () => {
  it('shows a known code in Chinese, with the code in full-width brackets', () => {
    const failure = new ApiFailure(409, 'duplicate_username', 'username clerk is taken')
    expect(errorText(failure, 'zh-CN')).toBe('用户名已被使用（duplicate_username）')
  })

  it("falls back to the API's message for a code without a Chinese text", () => {
    const failure = new ApiFailure(418, 'brand_new_code', 'something new went wrong')
    expect(errorText(failure, 'zh-CN')).toBe('something new went wrong（brand_new_code）')
    // failureOf's code of an answer that was no API error (a proxy's page)
    expect(errorText(new ApiFailure(502, 'http_502', 'Bad Gateway'), 'zh-CN')).toBe('服务器或网络出错，请稍后再试（http_502）')
  })

  it("shows the API's message with the code in English, as before", () => {
    const failure = new ApiFailure(409, 'duplicate_username', 'username clerk is taken')
    expect(errorText(failure, 'en')).toBe('username clerk is taken (duplicate_username)')
  })

  it('names the field of a validation failure', () => {
    const details = [{ field: 'phone', message: 'Expected `str`', source: 'body' }]
    const failure = new ApiFailure(400, 'validation_failed', 'invalid request (phone): Expected `str`', details)
    expect(errorText(failure, 'zh-CN')).toBe('填写的内容有误：phone（validation_failed）')
  })

  it("keeps the Chinese the API worded itself (a claim's store name, the PIN attempts left)", () => {
    const store = { code: 'wrong_store', message: '此产品应在西湖店销售 / this unit was supposed to be sold at 西湖店' }
    expect(errorText(store, 'zh-CN')).toBe('此产品应在西湖店销售（wrong_store）')
    const pin = { code: 'wrong_pin', message: '验证码错误，请核对后重新输入（还可尝试 2 次）。' }
    expect(errorText(pin, 'zh-CN')).toBe('验证码错误，请核对后重新输入（还可尝试 2 次）（wrong_pin）')
    // an English answer of the same code (a claim sent with lang=en) reads from the map
    expect(errorText({ code: 'wrong_pin', message: 'wrong PIN: 2 attempts left' }, 'zh-CN')).toBe(`${ZH_CN.wrong_pin}（wrong_pin）`)
    // a code the API words in English only: a Chinese name in it changes nothing
    expect(errorText({ code: 'not_a_store', message: '西湖仓 is a warehouse, not a store' }, 'zh-CN')).toBe('该组织不是门店（not_a_store）')
  })

  it('reads anything a page caught: an ApiFailure through errorText, an Error by its message', () => {
    expect(failureText(new ApiFailure(403, 'forbidden', 'forbidden'), 'zh-CN')).toBe('没有权限（forbidden）')
    expect(failureText(new TypeError('Failed to fetch'), 'zh-CN')).toBe('Failed to fetch')
    expect(failureText('offline', 'en')).toBe('offline')
  })
})
