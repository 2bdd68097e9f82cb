// Where warm's images come from without a registry: Kubernetes manifests
// (warm -f), a node's `ctr images list`, and --save's edit of the config file.
import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { resolveConfig } from '../../scripts/lib/core/config.ts'
import { imagesInManifests, imagesInYaml } from '../../scripts/lib/registries/manifest-images.ts'
import { nodeImageRefs, saveTarget, splitRoutable, withImages } from '../../scripts/lib/registries/warm-list.ts'

const MANIFESTS = join(import.meta.dir, 'fixtures/manifests')
/** Every image of fixtures/manifests once, files in sorted order (hidden directories and non-YAML files left out). */
const ALL = [
  'postgres:16-alpine', // cronjob.yml: jobTemplate
  'redis:7-alpine', // deployment.yaml
  'ghcr.io/org/sidecar:2',
  'nginx:1.27', // multi.yaml: StatefulSet, then an unknown kind, then a List (its postgres again)
  'quay.io/org/app:1',
  'registry.k8s.io/pause:3.10', // nested/job.yml
  'busybox:1.36', // pod.yaml: init, main (redis spelled out: the same image), ephemeral
  'debian:12',
]

describe('warm -f', () => {
  test('a directory of manifests: every image of every workload kind once, however it is spelled', async () => {
    expect(await imagesInManifests(MANIFESTS)).toEqual(ALL)
  })

  test('one file, and stdin', async () => {
    expect(await imagesInManifests(join(MANIFESTS, 'pod.yaml'))).toEqual(['busybox:1.36', 'docker.io/library/redis:7-alpine', 'debian:12'])
    const text = readFileSync(join(MANIFESTS, 'cronjob.yml'), 'utf8')
    expect(await imagesInManifests('-', [Buffer.from(text)])).toEqual(['postgres:16-alpine'])
  })

  test('a YAML error names the file, line and column; a missing path is a usage error', async () => {
    expect(() => imagesInYaml('kind: Pod\nspec: [a, b\n', 'x.yaml')).toThrow(/^x\.yaml:\d+:\d+: YAML syntax error/)
    await expect(imagesInManifests(join(MANIFESTS, 'nope'))).rejects.toThrow(/no such file or directory/)
  })
})

describe('warm --from-cluster', () => {
  const ctr = `REF                                          TYPE                                                 DIGEST                                                                  SIZE      PLATFORMS   LABELS
docker.io/library/redis:7-alpine             application/vnd.oci.image.index.v1+json              sha256:${'a'.repeat(64)} 16.1 MiB  linux/amd64 io.cri-containerd.image=managed
docker.io/library/redis@sha256:${'a'.repeat(64)} application/vnd.oci.image.index.v1+json sha256:${'a'.repeat(64)} 16.1 MiB linux/amd64 io.cri-containerd.image=managed
ghcr.io/org/tool@sha256:${'b'.repeat(64)}    application/vnd.oci.image.manifest.v1+json           sha256:${'b'.repeat(64)} 3.0 MiB   linux/amd64 io.cri-containerd.image=managed
registry.k8s.io/pause:3.10                   application/vnd.oci.image.index.v1+json              sha256:${'c'.repeat(64)} 300 KiB   linux/amd64 io.cri-containerd.image=managed,io.cri-containerd.pinned=pinned
sha256:${'d'.repeat(64)}                     application/vnd.oci.image.index.v1+json              sha256:${'a'.repeat(64)} 16.1 MiB  linux/amd64 io.cri-containerd.image=managed
docker.io/devreg-probe/verify@sha256:${'e'.repeat(64)} application/vnd.oci.image.index.v1+json sha256:${'e'.repeat(64)} 2.0 KiB linux/amd64 io.cri-containerd.image=managed
`

  test("a node's images: each tag, a digest reference only when no tag names it, no image IDs, not verify's probe", () => {
    expect(nodeImageRefs(ctr)).toEqual([
      'docker.io/library/redis:7-alpine',
      `ghcr.io/org/tool@sha256:${'b'.repeat(64)}`,
      'registry.k8s.io/pause:3.10',
    ])
  })

  test('routed to their caches; a host without one is left out with the reason', () => {
    const config = resolveConfig({ mirrors: [{ host: 'docker.io', upstream: 'http://up:5000' }, { host: 'ghcr.io' }] })
    expect(splitRoutable(config, nodeImageRefs(ctr))).toEqual({
      routable: ['docker.io/library/redis:7-alpine', `ghcr.io/org/tool@sha256:${'b'.repeat(64)}`],
      skipped: [{ image: 'registry.k8s.io/pause:3.10', reason: 'no cache for registry.k8s.io' }],
    })
  })
})

describe('--save', () => {
  test('writes images into the file and keeps its comments, key order and other keys', () => {
    const before = `# my overrides
cluster:
  provider: k3d # k3d on this laptop
images: # old list
  - old:1
warm: {concurrency: 8}
`
    const after = withImages(before, ['redis:7-alpine', 'ghcr.io/org/tool:1'], 'devreg.local.yaml')
    expect(after).toContain('# my overrides')
    expect(after).toContain('provider: k3d # k3d on this laptop')
    expect(after).toContain('warm: { concurrency: 8 }')
    expect(after.indexOf('cluster:')).toBeLessThan(after.indexOf('images:'))
    expect(after.indexOf('images:')).toBeLessThan(after.indexOf('warm:'))
    expect(parse(after)).toEqual({
      cluster: { provider: 'k3d' },
      images: ['redis:7-alpine', 'ghcr.io/org/tool:1'],
      warm: { concurrency: 8 },
    })
  })

  test('a missing or empty file gets just the images; --config or DEVREG_CONFIG names the file written, else config/devreg.local.yaml', () => {
    expect(parse(withImages(null, ['a:1'], 'x'))).toEqual({ images: ['a:1'] })
    expect(parse(withImages('# only a comment\n', ['a:1'], 'x'))).toEqual({ images: ['a:1'] })
    expect(() => withImages('- a list\n', ['a:1'], 'x.yaml')).toThrow(/x\.yaml: must be a YAML mapping/)
    expect(saveTarget('/tmp/k3d.yaml', {})).toBe('/tmp/k3d.yaml')
    expect(saveTarget(undefined, { DEVREG_CONFIG: '/tmp/ci.yaml' })).toBe('/tmp/ci.yaml')
    expect(saveTarget(undefined, { DEVREG_CONFIG: '' })).toMatch(/config\/devreg\.local\.yaml$/)
  })
})
