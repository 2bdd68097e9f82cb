// A registry volume for the fake runner: distribution's files by path, and
// replies that play what devreg runs on it as the engine and the templates
// do (read-storage.sh list; helper containers created, copied out of and
// into with `docker cp`, removed; volume-files.sh list/commit/clean/stages),
// so export, import and verify's probe placement run against it whole,
// without Docker.
import type { Registry } from '../../scripts/lib/core/config.ts'
import { readTar, tarOf } from '../../scripts/lib/core/tar.ts'
import { on, type Reply } from './fake-runner.ts'

const SENTINEL = '.devreg-complete'

export class FakeVolume {
  /** Files of distribution's storage, by path relative to the volume (docker/registry/v2/…). */
  readonly files = new Map<string, Buffer>()
  /** Staging directories by id, as `docker cp` left them (.devreg-complete included). */
  readonly stages = new Map<string, Map<string, Buffer>>()
  /** Helper containers with the volume mounted, by name: whether it is mounted writable. */
  readonly helpers = new Map<string, { write: boolean }>()

  constructor(
    readonly registry: Pick<Registry, 'volume' | 'image'>,
    public exists = true,
  ) {}

  /** What read-storage.sh list prints: every file and directory (S), tag links (L), manifests (M). */
  listing(): string {
    const dirs = new Set<string>()
    for (const path of this.files.keys()) {
      const parts = path.split('/')
      for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'))
    }
    const lines = [...dirs].sort().map((d) => `S 8 4096 1700000000 ./${d}`)
    for (const [path, body] of this.files) lines.push(`S 8 ${body.length} 1700000000 ./${path}`)
    for (const [path, body] of this.files) if (path.endsWith('/current/link')) lines.push(`L ./${path}:${body}`)
    for (const [path, body] of this.files)
      if (path.endsWith('/data') && body.toString().startsWith('{"schemaVersion"')) lines.push(`M ./${path} ${body}`)
    return lines.join('\n')
  }

  /** The replies of this volume's helpers; a copy into it may be told how to fail, and `onStage` sees each such copy start. */
  replies(stage: { readsOnly?: number; stderr?: string } = {}, onStage: () => void = () => {}): Reply[] {
    const { volume } = this.registry
    const helper = new RegExp(`^${volume}-files-`)
    return [
      on(['docker', 'volume', 'inspect', '--format', '{{.Name}}', volume], () => (this.exists ? volume : { exitCode: 1 })),
      on(['docker', 'volume', 'create', '--label', /./, volume], () => {
        this.exists = true
        return volume
      }),
      on(['docker', 'ps', '--all', '--filter', `label=devreg.volume-helper=${volume}`], () => [...this.helpers.keys()].join('\n')),
      on(['docker', 'create', '--name', helper, '--label', `devreg.volume-helper=${volume}`], (argv) => {
        this.helpers.set(argv[3], { write: !argv.includes(`${volume}:/var/lib/registry:ro`) })
        return argv[3]
      }),
      on(['docker', 'rm', '--force', helper], (argv) => {
        this.helpers.delete(argv[3])
        return argv[3]
      }),
      on(['docker', 'cp', new RegExp(`^${volume}-files-[^:]+:/var/lib/registry/docker/registry/v2$`), '-'], (argv) =>
        this.helpers.has(argv[2].split(':')[0]) ? { stdout: () => this.copyOut() } : { exitCode: 1, stderr: 'Error: No such container' },
      ),
      on(['docker', 'cp', '-', new RegExp(`^${volume}-files-[^:]+:/var/lib/registry$`)], (argv) => {
        if (!this.helpers.get(argv[3].split(':')[0])?.write) return { exitCode: 1, stderr: 'Error: read-only file system' }
        onStage()
        return { ...stage, exitCode: stage.readsOnly === undefined ? 0 : 1, stdout: (stdin: Buffer) => this.copyIn(stdin) }
      }),
      on(['docker', 'run', '--rm', '--network', 'none', '--volume', `${volume}:/volume:ro`], (argv) =>
        argv[argv.indexOf('read-storage') + 1] === 'list'
          ? this.listing()
          : { exitCode: 2, stderr: `fake volume: ${argv[argv.indexOf('read-storage') + 1]} is not played` },
      ),
      on(['docker', 'run', '--rm', '-i', '--network', 'none', '--volume', new RegExp(`^${volume}:`)], (argv) => {
        const [command, id] = argv.slice(argv.indexOf('volume-files') + 1)
        switch (command) {
          case 'list':
            return [...this.files.keys()].join('\n')
          case 'commit':
            return this.commit(id)
          case 'clean':
            this.stages.delete(id)
            return ''
          case 'stages':
            return [...this.stages.keys()].join('\n')
          default:
            return { exitCode: 2, stderr: `volume-files: unknown command ${command}` }
        }
      }),
    ]
  }

  /** What `docker cp HELPER:/var/lib/registry/docker/registry/v2 -` streams: the storage, its names from v2/ on. */
  private copyOut(): Promise<Buffer> {
    return tarOf([...this.files].map(([path, body]) => ({ path: path.replace(/^docker\/registry\//, ''), body, mtime: 1_700_000_000 })))
  }

  /** Extracts the tar on stdin into the volume as `docker cp -` does: whatever entries arrived whole, stages included. */
  private async copyIn(stdin: Buffer): Promise<string> {
    try {
      for await (const e of readTar([stdin])) {
        const parts: Buffer[] = []
        for await (const c of e.body) parts.push(c)
        const m = /^\.devreg-import-([^/]+)\/(.+)$/.exec(e.path)
        if (!m) throw new Error(`fake volume: ${e.path} is not in a stage`)
        const files = this.stages.get(m[1]) ?? new Map<string, Buffer>()
        files.set(m[2], Buffer.concat(parts))
        this.stages.set(m[1], files)
      }
    } catch (err) {
      if (/not in a stage/.test((err as Error).message)) throw err
    }
    return ''
  }

  /** Links a complete stage into the storage, never replacing a file, and removes it. */
  private commit(id: string): string | { exitCode: number; stderr: string } {
    const stage = this.stages.get(id)
    if (!stage?.has(SENTINEL)) return { exitCode: 1, stderr: `stage .devreg-import-${id} is not complete: nothing was committed` }
    for (const [path, body] of stage) if (path !== SENTINEL && !this.files.has(path)) this.files.set(path, body)
    this.stages.delete(id)
    return ''
  }
}

/** The version probe export makes of a registry image. */
export const registryVersion = on(['docker', 'run', '--rm', '--network', 'none', '--entrypoint', 'registry'], 'registry v3.0.0')
