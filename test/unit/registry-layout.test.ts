// distribution's storage layout, described once (registry-layout.ts): the
// paths devreg builds are the ones it recognises, and the shell programs that
// read and write volumes find files where the TypeScript puts them (run here
// on a directory laid out like a volume, with the host's sh, find and stat).
import { afterAll, describe, expect, test } from 'bun:test'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import {
  blobPath,
  COMMIT_ORDER,
  classifyListed,
  classifyPath,
  digestOfBlobPath,
  FILE_ORDER,
  LISTING_ARGS,
  layerLinkPath,
  REPOSITORIES_DIR,
  revisionLinkPath,
  STORAGE_ROOT,
  tagDirectory,
  tagIndexLinkPath,
  tagLinkPath,
} from '../../scripts/lib/registries/registry-layout.ts'
import { parseListing } from '../../scripts/lib/registries/storage.ts'

const TEMPLATES = join(import.meta.dir, '../../templates')
const scratch = mkdtempSync(join(tmpdir(), 'devreg-layout-'))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))
const sha = (body: string) => `sha256:${createHash('sha256').update(body).digest('hex')}`
const d = `sha256:${'ab'.repeat(32)}`

describe('paths', () => {
  test("each path builder gives distribution's path, which classifies as its kind with its names", () => {
    const table: [string, string, Record<string, string | null>][] = [
      [blobPath(d), `docker/registry/v2/blobs/sha256/ab/${'ab'.repeat(32)}/data`, { kind: 'blob', repository: null, tag: null, digest: d }],
      [
        layerLinkPath('library/redis', d),
        `docker/registry/v2/repositories/library/redis/_layers/sha256/${'ab'.repeat(32)}/link`,
        { kind: 'layer', repository: 'library/redis', tag: null, digest: d },
      ],
      [
        revisionLinkPath('a/b/c', d),
        `docker/registry/v2/repositories/a/b/c/_manifests/revisions/sha256/${'ab'.repeat(32)}/link`,
        { kind: 'revision', repository: 'a/b/c', tag: null, digest: d },
      ],
      [
        tagIndexLinkPath('app', 'v1.2', d),
        `docker/registry/v2/repositories/app/_manifests/tags/v1.2/index/sha256/${'ab'.repeat(32)}/link`,
        { kind: 'tagIndex', repository: 'app', tag: 'v1.2', digest: d },
      ],
      [
        tagLinkPath('app', 'v1.2'),
        'docker/registry/v2/repositories/app/_manifests/tags/v1.2/current/link',
        { kind: 'tag', repository: 'app', tag: 'v1.2', digest: null },
      ],
    ]
    for (const [built, path, what] of table) {
      expect(built).toBe(path)
      expect(classifyPath(built)).toEqual({ path, ...what } as never)
    }
    expect(FILE_ORDER).toEqual(['blob', 'layer', 'revision', 'tagIndex', 'tag'])
    expect(digestOfBlobPath(`./${blobPath(d)}`)).toBe(d)
  })

  test('what removing a tag deletes sits under the repositories directory GC is handed', () => {
    expect(`${REPOSITORIES_DIR}/${tagDirectory('app', 'v1')}/current/link`).toBe(`/var/lib/registry/${tagLinkPath('app', 'v1')}`)
  })

  test('an archive carries names by the reference grammar only; reading a volume takes any name distribution stored', () => {
    const odd = tagLinkPath('Upper/Case', 'v1')
    expect(classifyPath(odd)).toBeNull()
    expect(classifyListed(odd)).toEqual({ kind: 'tag', repository: 'Upper/Case', tag: 'v1' })
    expect(classifyPath(`${STORAGE_ROOT}/repositories/app/_uploads/x/data`)).toBeNull()
    expect(classifyPath(`${STORAGE_ROOT}/blobs/sha256/cd/${'ab'.repeat(32)}/data`)).toBeNull()
    expect(classifyListed(revisionLinkPath('Upper/app', d))).toEqual({ kind: 'revision', repository: 'Upper/app', digest: d })
    expect(classifyListed(layerLinkPath('Upper/app', d))).toEqual({ kind: 'layer', repository: 'Upper/app', digest: d })
    // What distribution's DELETE leaves of a manifest: its directory, without the link.
    expect(classifyListed(dirname(revisionLinkPath('app', d)))).toBeNull()
    expect(classifyListed(`${STORAGE_ROOT}/repositories/app/_uploads/x/data`)).toBeNull()
  })
})

/** A volume's root in a scratch directory holding library/app:1, an image of one layer, as distribution stores it. */
function volume(): { root: string; image: string; layer: string; files: Map<string, string> } {
  const root = mkdtempSync(join(scratch, 'volume-'))
  const layerBody = 'layer bytes'
  const layer = sha(layerBody)
  const imageBody = JSON.stringify({ schemaVersion: 2, layers: [{ digest: layer, size: layerBody.length }] })
  const image = sha(imageBody)
  const files = new Map([
    [blobPath(layer), layerBody],
    [blobPath(image), imageBody],
    [layerLinkPath('library/app', layer), layer],
    [revisionLinkPath('library/app', image), image],
    [tagIndexLinkPath('library/app', '1', image), image],
    [tagLinkPath('library/app', '1'), image],
  ])
  return { root, image, layer, files }
}

function write(dir: string, files: Map<string, string>): void {
  for (const [path, body] of files) {
    mkdirSync(dirname(join(dir, path)), { recursive: true })
    writeFileSync(join(dir, path), body)
  }
}

const sh = (cwd: string, script: string, args: string[], input = '') => {
  const r = spawnSync('sh', ['-c', readFileSync(join(TEMPLATES, script), 'utf8'), script.replace('.sh', ''), ...args], {
    cwd,
    input,
    encoding: 'utf8',
  })
  if (r.status !== 0) throw new Error(`${script} ${args[0]}: ${r.stderr}`)
  return r.stdout
}

describe('the shell programs take the layout as arguments', () => {
  test('read-storage.sh list finds the tags, manifests and layer links the TypeScript reads', () => {
    const v = volume()
    write(v.root, v.files)
    const storage = parseListing(sh(v.root, 'read-storage.sh', ['list', ...LISTING_ARGS]))
    const app = storage.repositories.get('library/app')
    expect(app?.tags.get('1')?.digest).toBe(v.image)
    expect([...(app?.revisions ?? [])]).toEqual([v.image])
    expect([...(app?.layers ?? [])]).toEqual([v.layer])
    expect(storage.manifests.get(v.image)?.blobs).toEqual([{ digest: v.layer, size: 11 }])
    expect([...storage.layerLinkedAt.keys()]).toEqual([`library/app@${v.layer}`])
  })

  test('read-storage.sh list does not count a manifest deleted through the API: distribution removes its link, not its directory', () => {
    const v = volume()
    write(v.root, v.files)
    const deleted = sha('a manifest deleted through the API')
    mkdirSync(join(v.root, dirname(revisionLinkPath('library/app', deleted))), { recursive: true })
    const storage = parseListing(sh(v.root, 'read-storage.sh', ['list', ...LISTING_ARGS]))
    expect([...(storage.repositories.get('library/app')?.revisions ?? [])]).toEqual([v.image])
  })

  test('volume-files.sh commit links a complete stage in where the layout says, and list finds every file', () => {
    const v = volume()
    write(join(v.root, '.devreg-import-x'), v.files)
    expect(() => sh(v.root, 'volume-files.sh', ['commit', 'x', ...COMMIT_ORDER])).toThrow(/stage .devreg-import-x is not complete/)
    expect(existsSync(join(v.root, STORAGE_ROOT))).toBe(false)
    write(join(v.root, '.devreg-import-x'), new Map([['.devreg-complete', '']]))
    sh(v.root, 'volume-files.sh', ['commit', 'x', ...COMMIT_ORDER])
    expect(existsSync(join(v.root, '.devreg-import-x'))).toBe(false)
    for (const [path, body] of v.files) expect(readFileSync(join(v.root, path), 'utf8')).toBe(body)
    const listed = sh(v.root, 'volume-files.sh', ['list', STORAGE_ROOT]).split('\n').filter(Boolean).sort()
    expect(listed).toEqual([...v.files.keys()].sort())
  })
})
