// dev-registry import through the real runner, with a docker that stands in
// for the engine: a copy into the volume that dies halfway through the
// archive must fail the import at once, with its own message, commit nothing
// and leave no helper container.
import { describe, expect, test } from 'bun:test'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { sampleArchive, tar } from '../kit/archive.ts'
import { runScript } from '../kit/scripts.ts'

const dir = mkdtempSync(join(tmpdir(), 'devreg-cli-carry-'))
const calls = join(dir, 'calls.log')
// Logs each command (with its volume-files command); the copy into the volume reads 100 KB of the archive, then
// fails as the engine does on a full disk.
writeFileSync(
  join(dir, 'docker'),
  `#!/bin/sh
prev= command=
for a in "$@"; do [ "$prev" = volume-files ] && command=$a; prev=$a; done
echo "$1 $2 $command" >> '${calls}'
case "$1 $2" in
  "volume inspect") echo volume; exit 0 ;;
  "cp -") head -c 100000 >/dev/null; echo 'Error response from daemon: no space left on device' >&2; exit 1 ;;
esac
exit 0
`,
  { mode: 0o755 },
)
const config = join(dir, 'devreg.yaml')
writeFileSync(config, stringify({ mirrors: [{ host: 'docker.io', upstream: 'http://127.0.0.1:9' }] }))

describe('dev-registry import', () => {
  test('a copy that dies halfway fails the import at once with its own message; nothing is committed, the helper is removed', async () => {
    const archive = join(dir, 'caches.tar')
    writeFileSync(archive, await tar(sampleArchive(randomBytes(4 << 20)).files()))
    const r = await runScript('dev-registry', ['import', archive, '--config', config], {
      env: { PATH: `${dir}:${process.env.PATH}`, XDG_RUNTIME_DIR: dir },
      timeoutMs: 20_000,
    })
    expect(r.stderr).toContain(
      'kind-cache-docker-io: the helper container writing into volume kind-cache-docker-io-data failed: Error response from daemon: no space left on device; nothing was imported',
    )
    expect(r.code).toBe(1)
    const log = readFileSync(calls, 'utf8')
    expect(log).toContain('create --name')
    expect(log).toContain('cp -')
    expect(log).toContain('rm --force')
    expect(log).toContain('run --rm clean')
    expect(log).not.toContain('commit')
  }, 30_000)
})
