// verify's judgement, pure: a probe's verdict from the registries' logs and,
// for a miss, the facts that explain it (the registry, the node's containerd,
// a proxy between them), in the order the fixes go; and the matrix.
import { table } from '../core/log.ts'
import type { Provider } from '../core/naming.ts'
import { withOldKeys } from '../core/old-keys.ts'
import { PROVIDERS } from './providers/index.ts'

export type Status = 'pass' | 'fail' | 'skip'

/** One registry domain as verify probes it. */
export interface Target {
  domain: string
  /** The devreg registry the route's first endpoint is (its in-network URL), or null for a remote. */
  first: string | null
  firstUrl: string
  /** Every URL of the chain after the first, in the order containerd tries them (endpoints, then server). */
  rest: string[]
}

/** One probe: a node and a registry domain. */
export interface Probe {
  node: string
  domain: string
  ref: string
  first: string | null
  status: Status
  detail: string
  fix: string | null
  /** Containers that logged this probe from the node, in the order containerd asked them. */
  answeredBy: string[]
}

/** A manifest request under PROBE_REPOSITORY, as a registry logged it. */
export interface Hit {
  container: string
  /** The registry domain the request was for: containerd's ?ns= on a mirror, else the Host header. */
  domain: string
  reference: string
  method: string
  address: string
  status: number
}

/**
 * The proxy a Go program (containerd) uses for an http:// URL of `address`
 * (name[:port]), from its environment as Go's httpproxy reads it (upper case
 * first): null when none applies, NO_PROXY covers the name, or it is loopback.
 */
export function proxyFor(env: Record<string, string>, address: string): string | null {
  const proxy = env.HTTP_PROXY || env.http_proxy
  if (!proxy) return null
  const name = address.replace(/:\d+$/, '')
  if (name === 'localhost' || /^127\./.test(name) || name === '::1') return null
  const noProxy = (env.NO_PROXY ?? env.no_proxy ?? '').split(',').map((s) => s.trim().toLowerCase())
  for (const entry of noProxy.filter(Boolean)) {
    if (entry === '*') return null
    const [e, port] = entry.split(/:(?=\d+$)/)
    if (port && !address.endsWith(`:${port}`)) continue
    const bare = e.replace(/^\*?\./, '')
    if (name === bare || name.endsWith(`.${bare}`)) return null
  }
  return proxy
}

/** What verify looked at besides the logs, gathered only for probes that failed. */
export interface Facts {
  provider: Provider
  network: string
  /** Container name → state and networks; absent when there is no such container. */
  containers: Map<string, { state: string; networks: string[] }>
  /** Node → the registry domains it has a hosts.toml for, containerd's proxy variables, whether it reads certs.d (null: not checked). */
  nodes: Map<string, { hostsToml: Set<string>; env: Record<string, string>; readsCertsD: boolean | null }>
}

type Verdict = Pick<Probe, 'status' | 'detail' | 'fix'>
const fail = (detail: string, fix: string): Verdict => ({ status: 'fail', detail, fix })

/** The verdict on one probe, from the registries' logs and, for a miss, the facts that explain it. */
export function judge(
  p: Probe,
  t: Target,
  hits: Hit[],
  nodeAddresses: string[],
  pull: { rc: number; out: string } | null,
  facts: Facts,
): Verdict {
  if (!t.first)
    return {
      status: 'skip',
      detail: `the route starts at ${t.firstUrl}, not at a devreg registry whose log verify can read`,
      fix: null,
    }
  const mine = hits.filter((h) => h.domain === p.domain)
  const answer = mine.find((h) => h.container === t.first && nodeAddresses.includes(h.address))
  if (answer) return { status: 'pass', detail: `${t.first} answered (${answer.method} ${answer.status})`, fix: null }
  return pullFault(p.node, pull) ?? explainMiss(p, t, t.first, mine, nodeAddresses, pull, facts)
}

/** A probe pull that never got as far as containerd's resolver, so no registry could have logged it. */
function pullFault(node: string, pull: { rc: number; out: string } | null): Verdict | null {
  if (!pull) return null
  if (pull.rc === 127 || /crictl: (not found|No such file)|executable file not found/.test(pull.out))
    return fail(
      `${node} has no crictl, so no probe pull ran`,
      'kind and k3s nodes ship crictl; use a node image that has it (kindest/node, rancher/k3s)',
    )
  if (/connect: no such file|ENOENT|Unavailable desc = .*(connection|socket)/i.test(pull.out))
    return fail(
      `crictl in ${node} cannot reach containerd: ${pull.out.slice(0, 200)}`,
      `\`docker exec ${node} crictl info\` and containerd's log in the node say why`,
    )
  return null
}

/**
 * Why `first` (the route's first registry) did not log the probe from its
 * node, checked in the order the fixes go: the registry, the node's
 * containerd, then something between them.
 */
function explainMiss(
  p: Probe,
  t: Target,
  first: string,
  mine: Hit[],
  nodeAddresses: string[],
  pull: { rc: number; out: string } | null,
  facts: Facts,
): Verdict {
  const fromNode = mine.filter((h) => nodeAddresses.includes(h.address))
  const others = [...new Set(fromNode.map((h) => h.container).filter((c) => c !== first))]
  const instead = others.length
    ? `${others.join(', ')} answered instead`
    : `nothing on the cluster network logged it (the node went past every devreg registry, to ${t.rest[t.rest.length - 1]} or nowhere)`
  const upstreamNote = others.length || t.rest.length ? ': the upstream answered, so pulls of this domain cost its rate limit' : ''
  const registry = facts.containers.get(first)
  if (registry?.state !== 'running')
    return fail(
      `${first} is ${registry ? registry.state : 'missing'}; ${instead}${upstreamNote}`,
      `\`just dev-registry\` ${registry ? 'starts it' : 'creates it'} (containerd falls through to the next registry of the route meanwhile)`,
    )
  if (!registry.networks.includes(facts.network))
    return fail(
      `${first} is not on ${facts.network}, so ${p.node} cannot reach it; ${instead}`,
      `\`just dev-registry\` attaches it again (or \`docker network connect ${facts.network} ${first}\`)`,
    )
  const nodeFault = containerdFault(p, t, first, facts, instead)
  if (nodeFault) return nodeFault
  const elsewhere = mine.filter((h) => h.container === first && !nodeAddresses.includes(h.address))
  if (elsewhere.length)
    return fail(
      `${first} logged it from ${elsewhere[0].address}, not from ${p.node} (${nodeAddresses.join(', ')}): something forwards the node's pulls`,
      'check the node for a proxy or NAT between it and the registries',
    )
  return fail(
    `${first} did not log it; ${instead}${pull?.out ? ` (crictl: ${pull.out.slice(0, 160)})` : ''}`,
    `\`just preflight\` checks names and mirror files; \`docker logs ${first}\` shows what the registry saw`,
  )
}

/** A miss the node's containerd explains: no hosts.toml for the domain, certs.d not read, or a proxy in the way. */
function containerdFault(p: Probe, t: Target, first: string, facts: Facts, instead: string): Verdict | null {
  const node = facts.nodes.get(p.node)
  if (!node) return null
  const { certsD: dir, routing, certsDCheck } = PROVIDERS[facts.provider]
  if (!node.hostsToml.has(p.domain))
    return fail(
      `${p.node} has no ${dir}/${p.domain}/hosts.toml, so containerd pulls ${p.domain} directly; ${instead}`,
      routing.fix.hostsToml,
    )
  if (certsDCheck && node.readsCertsD === false)
    return fail(
      `containerd in ${p.node} does not read ${dir} (no config_path in \`containerd config dump\` names it), so it ignores every hosts.toml; ${instead}`,
      certsDCheck.fix,
    )
  const proxy = proxyFor(node.env, first)
  if (proxy)
    return fail(
      `containerd in ${p.node} sends ${t.firstUrl} to the proxy ${proxy} (${first} is not in its NO_PROXY); ${instead}`,
      `add ${first} to NO_PROXY in the node: \`dev-up --recreate\` from a shell with the proxy set puts every registry there, or take the proxy out of containerd's environment`,
    )
  return null
}

export interface VerifyResult {
  ok: boolean
  cluster: string
  /** The probe image's digest. */
  image: string
  elapsedMs: number
  summary: Record<Status, number>
  probes: Probe[]
}

/** verify --json: the result, each probe with `host` beside `domain` until the next release (old-keys.ts). */
export const verifyJson = (r: VerifyResult) => ({ ...r, probes: r.probes.map((p) => withOldKeys(p, { host: 'domain' })) })

export function summarize(probes: Probe[]): Record<Status, number> {
  const count = (s: Status) => probes.filter((p) => p.status === s).length
  return { pass: count('pass'), fail: count('fail'), skip: count('skip') }
}

const CELL: Record<Status, string> = { pass: 'ok', fail: 'FAIL', skip: 'skip' }

/** The matrix (a row per registry domain, a column per node), then each failure and skip once with its fix. */
export function renderMatrix(r: Pick<VerifyResult, 'probes' | 'elapsedMs'>, onlyFailures = false): string {
  const nodes = [...new Set(r.probes.map((p) => p.node))]
  const domains = [...new Set(r.probes.map((p) => p.domain))]
  const at = (domain: string, node: string) => r.probes.find((p) => p.domain === domain && p.node === node)
  const grid = table(
    ['REGISTRY', 'FIRST REGISTRY', ...nodes.map((n) => n.toUpperCase())],
    domains.map((d) => [d, at(d, nodes[0])?.first ?? '-', ...nodes.map((n) => CELL[at(d, n)?.status ?? 'skip'])]),
  )
  const groups = new Map<string, { p: Probe; nodes: string[] }>()
  for (const p of r.probes.filter((x) => x.status !== 'pass' && (!onlyFailures || x.status === 'fail'))) {
    // The same cause on several nodes reads once; details name the node, so group on the fix and domain.
    const key = `${p.status}\0${p.domain}\0${p.fix}\0${p.detail.replaceAll(p.node, '<node>')}`
    const g = groups.get(key) ?? { p, nodes: [] }
    g.nodes.push(p.node)
    groups.set(key, g)
  }
  const notes = [...groups.values()]
    .sort((a, b) => (a.p.status === b.p.status ? 0 : a.p.status === 'fail' ? -1 : 1))
    .map(({ p, nodes }) => {
      const head = `${p.status === 'fail' ? '✗' : '-'} ${p.domain} (${nodes.join(', ')}): ${p.detail}`
      return p.fix ? `${head}\n    fix: ${p.fix}` : head
    })
  const s = summarize(r.probes)
  const tally = `${s.pass} passed, ${s.fail} failed, ${s.skip} skipped in ${(r.elapsedMs / 1000).toFixed(1)}s`
  return [grid, ...(notes.length ? ['', ...notes] : []), '', tally].join('\n')
}
