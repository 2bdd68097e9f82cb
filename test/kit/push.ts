// Builds images directly in a registry through the distribution push API, so
// a test knows every byte it stored: which layers are shared, each image's
// created time, and multi-platform indexes (which `docker push` cannot make
// from this machine).
import { createHash, randomBytes } from 'node:crypto'

export interface PushedBlob {
  digest: string
  size: number
}

export interface PushedImage {
  repo: string
  tag: string | null
  digest: string
  /** The manifest's own size in bytes. */
  size: number
  mediaType: string
  /** Config first, then layers. */
  blobs: PushedBlob[]
}

const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'

type Bytes = Uint8Array<ArrayBuffer>

/**
 * A layer: an uncompressed tar of one file of random bytes, so containerd can
 * unpack it. The same value pushed twice is one shared blob.
 */
export function layer(size: number): Bytes {
  const header = new Uint8Array(512)
  const put = (offset: number, text: string) => header.set(new TextEncoder().encode(text), offset)
  put(0, `data-${randomBytes(4).toString('hex')}`)
  put(100, '0000644\0')
  put(108, '0000000\0')
  put(116, '0000000\0')
  put(124, `${size.toString(8).padStart(11, '0')}\0`)
  put(136, '00000000000\0')
  put(148, '        ')
  put(156, '0')
  put(257, 'ustar\u000000')
  const sum = header.reduce((n, b) => n + b, 0)
  put(148, `${sum.toString(8).padStart(6, '0')}\0 `)
  const padded = Math.ceil(size / 512) * 512
  const tar = new Uint8Array(512 + padded + 1024)
  tar.set(header, 0)
  tar.set(randomBytes(size), 512)
  return tar
}

export async function pushBlob(base: string, repo: string, data: Bytes): Promise<PushedBlob> {
  const digest = sha256(data)
  // As docker push does: a blob the repository already has is not sent again.
  const head = await fetch(`${base}/v2/${repo}/blobs/${digest}`, { method: 'HEAD' })
  if (head.status === 200) return { digest, size: data.byteLength }
  const start = await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST' })
  if (start.status !== 202) throw new Error(`start upload to ${repo}: HTTP ${start.status}`)
  await start.arrayBuffer()
  const location = new URL(start.headers.get('location') ?? '', base)
  location.searchParams.set('digest', digest)
  const put = await fetch(location, { method: 'PUT', body: data, headers: { 'content-type': 'application/octet-stream' } })
  if (put.status !== 201) throw new Error(`upload ${digest} to ${repo}: HTTP ${put.status} ${await put.text()}`)
  return { digest, size: data.byteLength }
}

async function putManifest(base: string, repo: string, reference: string, mediaType: string, body: Bytes): Promise<void> {
  const res = await fetch(`${base}/v2/${repo}/manifests/${reference}`, { method: 'PUT', body, headers: { 'content-type': mediaType } })
  if (res.status !== 201) throw new Error(`PUT ${repo}:${reference}: HTTP ${res.status} ${await res.text()}`)
}

/**
 * Pushes an OCI image of the given layers whose config says `created`; tagged
 * when `tag` is given, else pushed by digest only (an untagged manifest).
 */
export async function pushImage(
  base: string,
  repo: string,
  tag: string | null,
  opts: { layers: Bytes[]; created: Date; platform?: { os: string; architecture: string } },
): Promise<PushedImage> {
  const platform = opts.platform ?? { os: 'linux', architecture: 'amd64' }
  const layers = []
  for (const l of opts.layers) layers.push(await pushBlob(base, repo, l))
  const configBytes = new TextEncoder().encode(
    JSON.stringify({
      created: opts.created.toISOString(),
      ...platform,
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
      config: {},
    }),
  )
  const config = await pushBlob(base, repo, configBytes)
  const manifest = new TextEncoder().encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...l })),
    }),
  )
  const digest = sha256(manifest)
  await putManifest(base, repo, tag ?? digest, OCI_MANIFEST, manifest)
  return { repo, tag, digest, size: manifest.byteLength, mediaType: OCI_MANIFEST, blobs: [config, ...layers] }
}

/** Pushes an OCI index over images already in `repo` (one per platform) and tags it. */
export async function pushIndex(base: string, repo: string, tag: string, images: PushedImage[], platforms: string[]): Promise<PushedImage> {
  const index = new TextEncoder().encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: images.map((m, i) => {
        const [os, architecture] = platforms[i].split('/')
        return { mediaType: m.mediaType, digest: m.digest, size: m.size, platform: { os, architecture } }
      }),
    }),
  )
  const digest = sha256(index)
  await putManifest(base, repo, tag, OCI_INDEX, index)
  return { repo, tag, digest, size: index.byteLength, mediaType: OCI_INDEX, blobs: [] }
}

/** HTTP status of GET manifest (tag or digest). */
export async function manifestStatus(base: string, repo: string, reference: string): Promise<number> {
  const res = await fetch(`${base}/v2/${repo}/manifests/${reference}`, {
    headers: { accept: `${OCI_INDEX}, ${OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json` },
  })
  await res.arrayBuffer()
  return res.status
}

/** The tags the registry lists for a repository (empty when it has none or the repository is gone). */
export async function tagsOf(base: string, repo: string): Promise<string[]> {
  const res = await fetch(`${base}/v2/${repo}/tags/list`)
  if (!res.ok) return []
  return (((await res.json()) as { tags: string[] | null }).tags ?? []).sort()
}
