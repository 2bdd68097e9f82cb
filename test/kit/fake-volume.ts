// A registry volume for the fake runner: distribution's files by path, and
// replies that play the helper containers devreg runs on it as the templates
// do (read-storage.sh list, volume-files.sh list/export/stage/commit/clean/
// stages), so export, import and verify's probe placement run against it
// whole, without Docker.
import type { Registry } from '../../scripts/lib/config.ts'
import { readTar, tarOf } from '../../scripts/lib/tar.ts'
import { on, type Reply } from './fake-runner.ts'

const SENTINEL = '.devreg-complete'

export class FakeVolume {
  /** Files of distribution's storage, by path relative to the volume (docker/registry/v2/…). */
  readonly files = new Map<string, Buffer>()
  /** Staging directories by id, as `stage` left them. */
  readonly stages = new Map<string, Map<string, Buffer>>()

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

  /** The replies of this volume's helpers; `stage` may be told how to fail, and `onStage` sees each stage start. */
  replies(stage: { readsOnly?: number; stderr?: string } = {}, onStage: () => void = () => {}): Reply[] {
    const { volume } = this.registry
    return [
      on(['docker', 'volume', 'inspect', '--format', '{{.Name}}', volume], () => (this.exists ? volume : { exitCode: 1 })),
      on(['docker', 'volume', 'create', '--label', /./, volume], () => {
        this.exists = true
        return volume
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
          case 'export':
            return { stdout: (stdin: Buffer) => this.export(stdin) }
          case 'stage':
            onStage()
            return { ...stage, exitCode: stage.readsOnly === undefined ? 0 : 1, stdout: (stdin: Buffer) => this.stage(id, stdin) }
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

  /** A tar of the paths on stdin that are there (busybox tar: names without ./). */
  private export(stdin: Buffer): Promise<Buffer> {
    const paths = stdin
      .toString()
      .split('\n')
      .filter((p) => this.files.has(p))
    return tarOf(paths.map((path) => ({ path, body: this.files.get(path) as Buffer, mtime: 1_700_000_000 })))
  }

  /** Extracts the tar on stdin into a stage, kept only when it ends with the completion mark. */
  private async stage(id: string, stdin: Buffer): Promise<string> {
    const files = new Map<string, Buffer>()
    try {
      for await (const e of readTar([stdin])) {
        const parts: Buffer[] = []
        for await (const c of e.body) parts.push(c)
        files.set(e.path, Buffer.concat(parts))
      }
    } catch {
      return ''
    }
    if (files.delete(SENTINEL)) this.stages.set(id, files)
    return ''
  }

  /** Links a stage into the storage, never replacing a file, and removes it. */
  private commit(id: string): string | { exitCode: number; stderr: string } {
    const stage = this.stages.get(id)
    if (!stage) return { exitCode: 1, stderr: `cd: .devreg-import-${id}: No such file or directory` }
    for (const [path, body] of stage) if (!this.files.has(path)) this.files.set(path, body)
    this.stages.delete(id)
    return ''
  }
}

/** The version probe export makes of a registry image. */
export const registryVersion = on(['docker', 'run', '--rm', '--network', 'none', '--entrypoint', 'registry'], 'registry v3.0.0')
