// docker-build as a user runs it: --dry-run prints the command it would run.
import { describe, expect, test } from 'bun:test'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { runScript } from '../kit/scripts.ts'

describe('docker-build --dry-run', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devreg-build-'))
  const file = join(dir, 'devreg.yaml')
  writeFileSync(file, stringify({ hosts: [{ name: 'api.dev.local', address: '10.0.0.5', buildAddress: '10.0.0.5' }] }))

  test('prints the quoted command and runs nothing', async () => {
    const args = ['--config', file, '--dry-run', '--build-arg', 'GREETING=hello world', '-t', 'app:dev', '.']
    const r = await runScript('docker-build', args)
    expect(r.code).toBe(0)
    expect(r.stdout).toBe("docker build --add-host api.dev.local:10.0.0.5 --build-arg $'GREETING=hello world' -t app:dev .\n")
  })
})
