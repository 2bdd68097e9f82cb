// What devreg applies for pods, read by the real kubectl offline (test/run.ts
// puts the one it builds on PATH); the e2e tests apply it to a real API server.
import { describe, expect, test } from 'bun:test'
import { $ } from 'zx'
import { docs, manifests } from '../kit/in-cluster-sample.ts'

describe('in-cluster manifests', () => {
  // kubectl decodes metadata into its typed ObjectMeta even offline (--local);
  // the field checks need an API server's schema (test/e2e). Under
  // DEVREG_REQUIRE_DOCKER=1 a missing kubectl fails the test instead of skipping it.
  const kubectl = Bun.which('kubectl')
  const required = process.env.DEVREG_REQUIRE_DOCKER === '1'
  test.skipIf(!kubectl && !required)('the real kubectl parses every document as the same object (client side, offline)', async () => {
    if (!kubectl) throw new Error('no kubectl on PATH (test/run.ts puts the one it builds there)')
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
