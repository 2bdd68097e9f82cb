// The distribution HTTP API, as devreg reads it, through the runner's fetch
// (so unit tests answer it: test/kit/fake-runner.ts).
import type { Runner } from '../core/exec.ts'

/** The part of the runner HTTP needs; waits also read its clock. */
type Http = Pick<Runner, 'fetch'>

export interface V2Answer {
  ok: boolean
  status: number | null
  /** The Docker-Distribution-Api-Version header, which marks a real registry. */
  apiVersion: string | null
  error: string | null
}

/** GET /v2/: 200 (or 401 where auth is on) with the distribution header means a registry answers. */
export async function pingV2(run: Http, base: string, timeoutMs = 2000): Promise<V2Answer> {
  try {
    const res = await run.fetch(`${base}/v2/`, { signal: AbortSignal.timeout(timeoutMs) })
    await res.arrayBuffer()
    const apiVersion = res.headers.get('docker-distribution-api-version')
    return { ok: (res.status === 200 || res.status === 401) && apiVersion !== null, status: res.status, apiVersion, error: null }
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code
    return { ok: false, status: null, apiVersion: null, error: cause ?? (err as Error).name }
  }
}

/** Polls GET /v2/ until it answers or the time is up; returns the last answer. */
export async function waitForV2(run: Pick<Runner, 'fetch' | 'clock'>, base: string, timeoutMs: number): Promise<V2Answer> {
  const deadline = run.clock.now() + timeoutMs
  for (;;) {
    const answer = await pingV2(run, base, Math.min(2000, Math.max(200, deadline - run.clock.now())))
    if (answer.ok || run.clock.now() >= deadline) return answer
    await run.clock.sleep(200)
  }
}

/** The URL on this machine (the host) of a registry published on bind:port. */
export function hostUrl(bind: string, port: number): string {
  return `http://${bind.includes(':') ? `[${bind}]` : bind}:${port}`
}

/** Manifest media types devreg asks for: an index (multi-platform) or one image. */
export const INDEX_TYPES = ['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']
export const IMAGE_TYPES = ['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json']
const ACCEPT = [...INDEX_TYPES, ...IMAGE_TYPES].join(', ')

export interface Descriptor {
  mediaType?: string
  digest: string
  size: number
  platform?: { os: string; architecture: string; variant?: string }
}

/** The parts of a manifest devreg reads: an index's children, or an image's config and layers. */
export interface ManifestDocument {
  mediaType?: string
  manifests?: Descriptor[]
  config?: Descriptor
  layers?: Descriptor[]
}

export const isIndex = (m: ManifestDocument, mediaType = m.mediaType ?? '') =>
  INDEX_TYPES.includes(mediaType) || (mediaType === '' && Array.isArray(m.manifests))

export const platformOf = (d: Descriptor) =>
  d.platform ? [d.platform.os, d.platform.architecture, d.platform.variant].filter(Boolean).join('/') : null

/** A registry's HTTP API refused or did not answer: `status` null when no answer came. */
export class RegistryError extends Error {
  constructor(
    message: string,
    readonly status: number | null,
  ) {
    super(message)
    this.name = 'RegistryError'
  }

  /** What to do about it, by what the registry said. */
  get fix(): string {
    if (this.status === null) return 'check that the registry runs and answers (`just dev-registry status`)'
    if (this.status === 401 || this.status === 403) return "check the registry's credentials"
    if (this.status === 404) return 'it is not (or no longer) in the registry: check the name'
    if (this.status === 405) return 'the registry does not allow it (storage delete disabled?)'
    if (this.status >= 500) return 'the registry failed: `docker logs` of its container says why'
    return 'check the request against the registry (`docker logs` of its container)'
  }
}

async function request(run: Http, url: string, init: RequestInit = {}, timeoutMs = 60_000): Promise<Response> {
  try {
    return await run.fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) })
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name
    throw new RegistryError(`${init.method ?? 'GET'} ${url}: ${cause}`, null)
  }
}

async function expectOk(res: Response, what: string): Promise<Response> {
  if (res.ok) return res
  const body = (await res.text()).slice(0, 300).trim()
  throw new RegistryError(`${what}: HTTP ${res.status}${body ? ` ${body}` : ''}`, res.status)
}

export interface FetchedManifest {
  digest: string
  mediaType: string
  size: number
  document: ManifestDocument
}

/** GET a manifest by tag or digest, accepting indexes and single-platform images. */
export async function getManifest(run: Http, base: string, repository: string, reference: string): Promise<FetchedManifest> {
  const url = `${base}/v2/${repository}/manifests/${reference}`
  const res = await expectOk(await request(run, url, { headers: { accept: ACCEPT } }), `GET ${repository}:${reference}`)
  const body = new Uint8Array(await res.arrayBuffer())
  const document = JSON.parse(new TextDecoder().decode(body)) as ManifestDocument
  const digest = res.headers.get('docker-content-digest') ?? (reference.startsWith('sha256:') ? reference : '')
  return { digest, mediaType: res.headers.get('content-type') ?? document.mediaType ?? '', size: body.byteLength, document }
}

/**
 * GET a blob and count its bytes without keeping them. Through a
 * pull-through cache this is what makes the cache store the blob.
 */
export async function readBlob(
  run: Http,
  base: string,
  repository: string,
  digest: string,
  onBytes?: (n: number) => void,
): Promise<number> {
  const res = await expectOk(await request(run, `${base}/v2/${repository}/blobs/${digest}`, {}, 30 * 60_000), `GET ${repository}@${digest}`)
  let total = 0
  if (!res.body) return total
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    total += chunk.byteLength
    onBytes?.(chunk.byteLength)
  }
  return total
}

/** DELETE a manifest by digest (distribution needs storage delete enabled; 405 otherwise). */
export async function deleteManifest(run: Http, base: string, repository: string, digest: string): Promise<void> {
  const url = `${base}/v2/${repository}/manifests/${digest}`
  const res = await request(run, url, { method: 'DELETE' })
  // 404: already gone (another tag's deletion took it), which is the goal.
  if (res.status === 404) return
  await expectOk(res, `DELETE ${repository}@${digest}`)
}

/** Follows the Link header distribution uses to paginate _catalog and tags/list. */
async function paginate<T>(run: Http, base: string, first: string, key: string): Promise<T[]> {
  const items: T[] = []
  let next: string | null = first
  while (next) {
    const res = await expectOk(await request(run, `${base}${next}`), `GET ${next}`)
    const page = (await res.json()) as Record<string, T[] | null>
    items.push(...(page[key] ?? []))
    next = /<([^>]+)>;\s*rel="next"/.exec(res.headers.get('link') ?? '')?.[1] ?? null
  }
  return items
}

export const listRepositories = (run: Http, base: string) => paginate<string>(run, base, '/v2/_catalog?n=1000', 'repositories')
export const listTags = (run: Http, base: string, repository: string) =>
  paginate<string>(run, base, `/v2/${repository}/tags/list?n=1000`, 'tags')
