// The one image-reference grammar devreg validates the config by (distribution/reference/regexp.go).
import { describe, expect, test } from 'bun:test'
import { isImageReference } from '../../scripts/lib/core/reference.ts'

const DIGEST = `sha256:${'a'.repeat(64)}`

describe('isImageReference', () => {
  test.each([
    ['registry:2'],
    ['registry'],
    ['kindest/node:v1.31.0'],
    ['docker.io/library/redis:7-alpine'],
    ['ghcr.io/acme/app:1.2'],
    ['localhost:5001/app:dev'],
    ['my.registry:5000/team/app'],
    ['rancher/k3s:v1.31.1-k3s1'],
    ['a/b.c/d_e/f__g/h--i:TAG_1.x'],
    [`quay.io/a/b@${DIGEST}`],
    [`redis:7@${DIGEST}`],
  ])('%s is a reference', (text) => expect(isImageReference(text)).toBe(true))

  test.each([
    [''],
    ['Redis:7'],
    ['redis:'],
    ['redis:-bad'],
    [`redis:${'t'.repeat(129)}`],
    ['redis@sha256:abc'],
    [`redis@md5:${'a'.repeat(64)}`],
    ['acme//app'],
    ['acme/app/'],
    ['/app'],
    ['app.'],
    ['a_-b'],
    ['redis:7; rm -rf /'],
    ['$(id)'],
    ['https://ghcr.io/acme/app'],
    ['registry:2 '],
  ])('%j is not', (text) => expect(isImageReference(text)).toBe(false))
})
