// The distribution HTTP API, as devreg reads it.

export interface V2Answer {
  ok: boolean
  status: number | null
  /** The Docker-Distribution-Api-Version header, which marks a real registry. */
  apiVersion: string | null
  error: string | null
}

/** GET /v2/: 200 (or 401 where auth is on) with the distribution header means a registry answers. */
export async function pingV2(base: string, timeoutMs = 2000): Promise<V2Answer> {
  try {
    const res = await fetch(`${base}/v2/`, { signal: AbortSignal.timeout(timeoutMs) })
    await res.arrayBuffer()
    const apiVersion = res.headers.get('docker-distribution-api-version')
    return { ok: (res.status === 200 || res.status === 401) && apiVersion !== null, status: res.status, apiVersion, error: null }
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code
    return { ok: false, status: null, apiVersion: null, error: cause ?? (err as Error).name }
  }
}

/** Polls GET /v2/ until it answers or the time is up; returns the last answer. */
export async function waitForV2(base: string, timeoutMs: number): Promise<V2Answer> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const answer = await pingV2(base, Math.min(2000, Math.max(200, deadline - Date.now())))
    if (answer.ok || Date.now() >= deadline) return answer
    await new Promise((r) => setTimeout(r, 200))
  }
}

/** The host URL of a registry published on bind:port. */
export function hostUrl(bind: string, port: number): string {
  return `http://${bind.includes(':') ? `[${bind}]` : bind}:${port}`
}
