// Registry helpers for integration tests: seed a fake upstream, read what a
// registry stores, pull through the host's Docker daemon.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { $ } from 'zx'
import { type Sample, sampleImage } from './images.ts'

const q = () => $({ quiet: true })

/** Pushes a sample image to a registry published on 127.0.0.1:port as repo:tag. */
export async function seed(port: number, sample: Sample, repo: string, tag = '1'): Promise<string> {
  const ref = `127.0.0.1:${port}/${repo}:${tag}`
  await q()`docker tag ${sampleImage(sample)} ${ref}`
  await q()`docker push ${ref}`
  await q()`docker rmi ${ref}`
  return ref
}

/** The blob digests (config and layers) of repo:tag as the registry on port serves it. */
export async function manifestBlobs(port: number, repo: string, tag: string): Promise<string[]> {
  const res = await fetch(`http://127.0.0.1:${port}/v2/${repo}/manifests/${tag}`, {
    headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json' },
  })
  if (!res.ok) throw new Error(`GET manifest ${repo}:${tag} on ${port}: HTTP ${res.status}`)
  const m = (await res.json()) as { config: { digest: string }; layers: { digest: string }[] }
  return [m.config.digest, ...m.layers.map((l) => l.digest)]
}

/** Digests of the blobs in a registry container's storage. */
export async function storedBlobs(container: string): Promise<string[]> {
  const r = await $({ quiet: true, nothrow: true })`docker exec ${container} find /var/lib/registry/docker/registry/v2/blobs -name data`
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((p) => `sha256:${p.split('/').at(-2)}`)
}

/** Waits until a cache has stored every blob (distribution stores proxied blobs as it streams them). */
export async function waitStored(container: string, digests: string[], timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const stored = new Set(await storedBlobs(container))
    if (digests.every((d) => stored.has(d))) return
    if (Date.now() > deadline) throw new Error(`${container} did not store ${digests.filter((d) => !stored.has(d)).join(', ')}`)
    await Bun.sleep(200)
  }
}

/**
 * Pulls every blob of an image over plain HTTP with skopeo. (The host's Docker
 * daemon would skip layers it already has, so it proves nothing about a cache.)
 */
export async function pull(ref: string): Promise<{ ok: boolean; stderr: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'devreg-pull-'))
  try {
    const r = await $({ quiet: true, nothrow: true })`skopeo copy --quiet --src-tls-verify=false ${`docker://${ref}`} ${`dir:${dir}`}`
    return { ok: r.exitCode === 0, stderr: r.stderr }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

export async function containerId(name: string): Promise<string> {
  return (await q()`docker inspect --format {{.Id}} ${name}`).stdout.trim()
}

export async function cacheMode(name: string): Promise<string> {
  return (await $({ quiet: true, nothrow: true })`docker exec ${name} cat /tmp/devreg-mode`).stdout.trim()
}

/** Polls fn until it returns true. */
export async function eventually(what: string, fn: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await Bun.sleep(250)
  }
}

/**
 * Bytes of blobs a registry has served, summed from its access log
 * (distribution logs `response completed` with http.response.written for
 * every request). Manifest requests and HEADs are not counted.
 */
export async function servedBlobBytes(container: string): Promise<number> {
  const logs = await $({ quiet: true })`docker logs ${container}`
  return blobBytesInLog(`${logs.stdout}\n${logs.stderr}`)
}

/** servedBlobBytes of a registry log already read (from another engine, say), of one repository when given. */
export function blobBytesInLog(log: string, repo?: string): number {
  let total = 0
  for (const line of log.split('\n')) if (blobGetIn(line, repo)) total += Number(/http\.response\.written=(\d+)/.exec(line)?.[1] ?? 0)
  return total
}

/** The blob GETs a registry's access log shows for one repository, as counts by digest. */
export async function blobGets(container: string, repo: string): Promise<Record<string, number>> {
  const logs = await $({ quiet: true })`docker logs ${container}`
  const counts: Record<string, number> = {}
  for (const line of `${logs.stdout}\n${logs.stderr}`.split('\n')) {
    const digest = blobGetIn(line, repo)
    if (digest) counts[digest] = (counts[digest] ?? 0) + 1
  }
  return counts
}

/**
 * The digest of the blob an access-log line shows a completed GET of (of
 * `repo`'s blobs when given), or null: distribution logs `response completed`
 * for every request it completed. containerd asks a mirror with `?ns=HOST`.
 */
function blobGetIn(line: string, repo?: string): string | null {
  if (!line.includes('response completed') || !line.includes('http.request.method=GET')) return null
  const uri = /http\.request\.uri="\/v2\/([^"?]+)\/blobs\/([a-z0-9+._-]+:[a-zA-Z0-9=_-]+)(?:\?[^"]*)?"/.exec(line)
  if (!uri || (repo !== undefined && uri[1] !== repo)) return null
  return uri[2]
}
