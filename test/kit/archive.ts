// A devreg archive made by hand, as `dev-registry export` writes one: a cache
// of docker.io holding library/app:1 (one image manifest and its layer), for
// tests of import that need no volume to export from.
import { createHash } from 'node:crypto'
import { type ArchiveManifest, FORMAT } from '../../scripts/lib/carry/archive.ts'
import { tarOf } from '../../scripts/lib/core/tar.ts'

const V2 = 'docker/registry/v2'
export const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`

export function sampleArchive(layer: Buffer) {
  const image = Buffer.from(JSON.stringify({ schemaVersion: 2, layers: [{ digest: sha(layer), size: layer.length }] }))
  const digests = { layer: sha(layer), image: sha(image) }
  const manifest: ArchiveManifest = {
    format: FORMAT,
    devreg: '0.1.0',
    created: '2025-01-01T00:00:00Z',
    registries: [
      {
        key: 'docker.io',
        role: 'cache',
        name: 'kind-cache-docker-io',
        upstreamDomain: 'docker.io',
        host: 'docker.io',
        upstream: 'https://registry-1.docker.io',
        volume: 'kind-cache-docker-io-data',
        image: 'registry:3',
        distribution: 'v3.0.0',
        repositories: [{ name: 'library/app', tags: { '1': digests.image }, manifests: [digests.image], layers: [digests.layer] }],
        blobs: { [digests.image]: image.length, [digests.layer]: layer.length },
        files: 6,
        bytes: image.length + layer.length,
      },
    ],
  }
  const base = `registries/docker.io/${V2}`
  const repo = `${base}/repositories/library/app`
  const hexOf = (x: string) => x.slice(7)
  /** The archive's entries in order; another manifest or tag link makes a damaged one. */
  const files = (m: ArchiveManifest = manifest, tagLink = digests.image): [string, Buffer | string][] => {
    const json = `${JSON.stringify(m)}\n`
    return [
      ['devreg-export.json', json],
      [`${base}/blobs/sha256/${hexOf(digests.layer).slice(0, 2)}/${hexOf(digests.layer)}/data`, layer],
      [`${base}/blobs/sha256/${hexOf(digests.image).slice(0, 2)}/${hexOf(digests.image)}/data`, image],
      [`${repo}/_layers/sha256/${hexOf(digests.layer)}/link`, digests.layer],
      [`${repo}/_manifests/revisions/sha256/${hexOf(digests.image)}/link`, digests.image],
      [`${repo}/_manifests/tags/1/index/sha256/${hexOf(digests.image)}/link`, digests.image],
      [`${repo}/_manifests/tags/1/current/link`, tagLink],
      ['devreg-export.end.json', JSON.stringify({ manifestSha256: sha(json), files: 6 })],
    ]
  }
  return { image, digests, manifest, files }
}

/** Entries as a tar, each file with the same time. */
export const tar = (entries: [string, Buffer | string][]) =>
  tarOf(entries.map(([path, body]) => ({ path, body: Buffer.from(body), mtime: 1_700_000_000 })))
