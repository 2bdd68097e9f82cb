// What devreg applies for pods, read by kubectl: the stand-in the tests run
// (test/stand-ins/kubectl.ts) and, where installed, the real one offline.
import { describe, expect, test } from 'bun:test'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { $ } from 'zx'
import { docs, manifests } from '../kit/in-cluster-sample.ts'
import { ROOT } from '../kit/scripts.ts'

describe('in-cluster manifests', () => {
  test('the kubectl stand-in accepts them (it fails only later, at the missing context)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'devreg-unit-'))
    writeFileSync(join(dir, 'kubeconfig'), 'contexts: []\n')
    const r = await $({
      quiet: true,
      nothrow: true,
      input: manifests,
      env: { ...process.env, KUBECONFIG: join(dir, 'kubeconfig'), DEVREG_STANDIN_STATE: dir },
    })`${join(ROOT, 'test/stand-ins/bin/kubectl')} --context kind-x apply -f -`
    expect(r.stderr).toContain('context "kind-x" does not exist')
  })

  // kubectl decodes metadata into its typed ObjectMeta even offline (--local);
  // the field checks need an API server's schema, which the stand-in stands in for.
  const kubectl = Bun.which('kubectl', {
    PATH: process.env.PATH?.split(':')
      .filter((p) => !p.includes('stand-ins'))
      .join(':'),
  })
  test.skipIf(!kubectl)('the real kubectl parses every document as the same object (client side, offline)', async () => {
    const r = await $({
      quiet: true,
      nothrow: true,
      input: manifests,
      env: { ...process.env, KUBECONFIG: '/dev/null' },
    })`${kubectl} label --local -f - -o json devreg-parse-check=1`
    expect(r.stderr).toBe('')
    // One JSON object per document, one after the other.
    const parsed = JSON.parse(`[${r.stdout.trim().replace(/\n}\n{/g, '\n},\n{')}]`) as { metadata: { labels: Record<string, string> } }[]
    for (const p of parsed) delete p.metadata.labels['devreg-parse-check']
    expect(parsed).toEqual(docs)
  })
})
