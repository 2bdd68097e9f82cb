// dev-registry warm -f and --save as a user runs them, without Docker: what
// --dry-run plans from a directory of manifests and from stdin, and that a dry
// --save writes nothing.
import { describe, expect, test } from 'bun:test'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runScript } from '../kit/scripts.ts'

const MANIFESTS = join(import.meta.dir, '../unit/fixtures/manifests')

describe('dev-registry warm -f', () => {
  test('--dry-run plans each image once through its cache, and leaves out what no cache serves', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'devreg-warm-f-'))
    const config = join(dir, 'devreg.yaml')
    writeFileSync(config, 'mirrors:\n  - {host: docker.io, upstream: "http://up:5000"}\n  - {host: quay.io, upstream: "http://up2:5000"}\n')
    const r = await runScript('dev-registry', ['--config', config, 'warm', '-f', MANIFESTS, '--dry-run'])
    expect(r.code, r.stderr).toBe(0)
    const planned = r.stdout.trim().split('\n')
    expect(planned.map((l) => l.split(' ')[2])).toEqual([
      'docker.io/library/postgres:16-alpine',
      'docker.io/library/redis:7-alpine',
      'docker.io/library/nginx:1.27',
      'quay.io/org/app:1',
      'docker.io/library/busybox:1.36',
      'docker.io/library/debian:12',
    ])
    expect(r.stderr).toContain('left out ghcr.io/org/sidecar:2: no cache for ghcr.io')
    expect(r.stderr).toContain('left out registry.k8s.io/pause:3.10: no cache for registry.k8s.io')
    const piped = await runScript('dev-registry', ['--config', config, 'warm', '-f', '-', '--dry-run'], {
      input: readFileSync(join(MANIFESTS, 'pod.yaml'), 'utf8'),
    })
    expect(piped.stdout.trim().split('\n')).toHaveLength(3)
  })
})

describe('dev-registry warm --save', () => {
  test('-f with --save writes the list, --dry-run shows it instead', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'devreg-warm-save-'))
    const config = join(dir, 'devreg.yaml')
    const text = '# team config\nmirrors:\n  - {host: docker.io, upstream: "http://up:5000"}\nimages: [old:1]\n'
    writeFileSync(config, text)
    const dry = await runScript('dev-registry', ['--config', config, 'warm', '-f', join(MANIFESTS, 'pod.yaml'), '--save', '--dry-run'])
    expect(dry.code, dry.stderr).toBe(0)
    expect(dry.stdout).toContain(`# would write ${config}:`)
    expect(readFileSync(config, 'utf8')).toBe(text)
  })
})
