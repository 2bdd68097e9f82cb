// devreg on the real kind 0.33 CLI with kindest/node's containerd 2.3 nodes, in the test
// rig's private engine (test/kit/rig): what `dev-up` adds to cluster creation
// over a bare `kind create cluster`, what a no-op `dev-up` (verify included)
// costs over `kind get nodes` + one kubectl call, and the pulls section's warm row
// measured in a real kind node through CRI, the kubelet's path.
// bench/kind-measure.ts measures inside the rig's network namespace; this
// file starts the rig, runs it and turns its numbers into the report.
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { type BenchContext, type Check, median, ROOT, type Section, seconds } from './harness.ts'
import type { KindMeasurement } from './kind-measure.ts'
import { MB, SCALE, WARM_FLOOR_MAX } from './pulls.ts'

/** devreg's own cost on cluster creation, as a ratio to a bare `kind create cluster`. */
const DEV_UP_MAX = 1.3
/** A no-op `dev-up` with verify, as a ratio to `kind get nodes` + one `kubectl get` (issue 24). */
const NOOP_MAX = 3

/** Runs argv with `env` added; its stdout, its stderr passed through as progress. */
function capture(argv: string[], env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (c) => {
      out += c
    })
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${argv.join(' ')} exited ${code}`))))
  })
}

const ms = (n: number) => seconds(n)
const each = (xs: number[]) => xs.map(ms).join(', ')
/** Requests by method, HEAD and GET always and first, others when there were any: "8 HEAD, 0 GET". */
const byMethod = (counts: Record<string, number>) =>
  Object.entries({ HEAD: 0, GET: 0, ...counts })
    .filter(([method, n]) => n || method === 'HEAD' || method === 'GET')
    .map(([method, n]) => `${n} ${method}`)
    .join(', ')
const restarts = (starts: number) =>
  starts > 1 ? `here it did, containerd started ${starts} times` : 'here it did not, containerd started once'

export const kind: Section = {
  name: 'kind',
  title: 'Real kind: cluster creation and warm pulls through CRI',
  async run({ id, bun }: BenchContext) {
    // 1. The rig, 2. the measurements in it.
    const m = await measureInRig(id, bun)
    // 3. The report.
    const r = medians(m)
    return { markdown: kindMarkdown(m, r), checks: kindChecks(m, r) }
  },
}

async function measureInRig(id: string, bun: string): Promise<KindMeasurement> {
  // 1. The rig: its engine (started only if it is not running) and the node image with kindest/node's containerd.
  // Not rigUp(): it clears the engine, where other runs may be testing at the same time.
  const { ENGINE, startEngine, stopEngine } = await import('../test/kit/rig/engine.ts')
  const { nodeImage } = await import('../test/kit/rig/node-image.ts')
  const { path, started } = await startEngine()
  try {
    const image = await nodeImage('kindest')
    // The real kubectl, built from the nodes' Kubernetes.
    const { goProgram } = await import('../test/kit/rig/go-programs.ts')
    const env = { DOCKER_HOST: ENGINE.host, PATH: `${await goProgram('kubectl')}:${path}` }
    // 2. The measurements, inside the engine's network namespace where its ports are.
    const out = await capture(['nsenter', `--net=${ENGINE.netnsPath}`, bun, join(ROOT, 'bench/kind-measure.ts'), id, image], env)
    return JSON.parse(out.trim().split('\n').at(-1) ?? '')
  } finally {
    if (started) await stopEngine()
  }
}

/** The medians and ratios the report and the checks use. */
function medians(m: KindMeasurement) {
  const devUpMs = median(m.devUp.map((r) => r.ms))
  const bareMs = median(m.bare)
  const warmMs = median(m.warm)
  const floorMs = median(m.floor)
  const noopMs = median(m.noop.map((r) => r.ms))
  const noopFloorMs = median(m.noopFloor)
  return {
    devUpMs,
    /** The run whose time is the median, for its phases. */
    mid: m.devUp.find((r) => r.ms === devUpMs) ?? m.devUp[0],
    bareMs,
    createRatio: devUpMs / bareMs,
    warmMs,
    floorMs,
    pullRatio: warmMs / floorMs,
    noopMs,
    noopMid: m.noop.find((r) => r.ms === noopMs) ?? m.noop[0],
    noopFloorMs,
    noopRatio: noopMs / noopFloorMs,
  }
}
type Medians = ReturnType<typeof medians>

const phaseList = (phases: Record<string, number>) =>
  Object.entries(phases)
    .map(([p, t]) => `${p} ${ms(t)}`)
    .join(', ')

function kindMarkdown(m: KindMeasurement, r: Medians): string {
  return [
    `The real ${m.versions.kind.split(' ').slice(0, 2).join(' ')} CLI on the test rig's private Docker ${m.versions.engine}, nodes of`,
    `\`${m.nodeImage}\` (${m.versions.containerd.split(' ').slice(0, 3).join(' ')} under systemd; a real kubelet and the real`,
    '`kubeadm init` with its static pods, CoreDNS and kube-proxy, as a kindest/node boots). One control-plane node each time.',
    '',
    ...creationMarkdown(m, r),
    '',
    ...noopMarkdown(m, r),
    '',
    ...warmPullsMarkdown(m, r),
  ].join('\n')
}

function creationMarkdown(m: KindMeasurement, r: Medians): string[] {
  return [
    `**Cluster creation, median of ${m.devUp.length}**, alternated: a whole \`dev-up --json\` under Bun with the registries already up and`,
    'healthy and no cluster (then `dev-down`), against a bare `kind create cluster --name X --image <the same image>`',
    "(then `kind delete cluster`) on the same network. dev-up's time includes its kind create (with devreg's",
    "containerd patch only where the node image's containerd does not read certs.d by itself: kind restarts containerd",
    `for it; ${restarts(m.containerdStarts)}), hosts.toml written into the node as it starts, the in-cluster`,
    'objects, the Ready wait and verify. The phases after `cluster` run at once, so their times overlap.',
    '',
    '| run | wall time | runs |',
    '| --- | ---: | --- |',
    `| \`dev-up\` on warm caches (${phaseList(r.mid.phases)}) | ${ms(r.devUpMs)} | ${each(m.devUp.map((x) => x.ms))} |`,
    `| bare \`kind create cluster\` | ${ms(r.bareMs)} | ${each(m.bare)} |`,
    `| ratio | ${r.createRatio.toFixed(2)}x (devreg adds ${ms(r.devUpMs - r.bareMs)}) | |`,
    '',
    "The rig's nodes differ from kindest/node in their pod network (the CNI plugins' bridge instead of kindnet) and in",
    "importing the control plane's images at boot (about 4.5 s), which both sides of the ratio pay.",
  ]
}

function noopMarkdown(m: KindMeasurement, r: Medians): string[] {
  return [
    `**No-op \`dev-up\` with verify, median of ${m.noop.length}**, alternated: \`dev-up --json\` on the live cluster the last run`,
    `created, which changes nothing (checked), verify included (${r.noopMid.verify.pass} probe pulls through CRI, ${m.nodes} node${m.nodes === 1 ? '' : 's'}`,
    "x every registry domain, all passed; they run in the mirrors phase's one exec per node, so verify's own time is",
    "reading the registries' logs), against the floor of asking whether the cluster is there:",
    '`kind get nodes --name X` then one kubectl read (the local-registry-hosting ConfigMap, from the API server).',
    '',
    '| run | wall time | runs |',
    '| --- | ---: | --- |',
    `| no-op \`dev-up\` with verify (${phaseList(r.noopMid.phases)}) | ${ms(r.noopMs)} | ${each(m.noop.map((x) => x.ms))} |`,
    `| \`kind get nodes\` + \`kubectl get\` (the floor) | ${ms(r.noopFloorMs)} | ${each(m.noopFloor)} |`,
    `| ratio | ${r.noopRatio.toFixed(2)}x | |`,
    '',
    ...noopPathMarkdown(r.noopMid),
  ]
}

/**
 * Where the median no-op's time went, along its longest path: the phases
 * after `cluster` run at once, verify after the mirrors.
 */
function noopPathMarkdown({ ms: total, phases: p }: KindMeasurement['noop'][number]): string[] {
  const at = (k: string) => p[k] ?? 0
  const first = ['start', 'observe', 'registries', 'cluster']
  const serial = first.reduce((sum, k) => sum + at(k), 0)
  const probing = at('mirrors') + at('verify')
  const path = [
    ...first.map((k) => `${k} ${ms(at(k))}`),
    `then at once the longest of mirrors + verify ${ms(probing)}, ready ${ms(at('ready'))} and in-cluster ${ms(at('in-cluster'))}`,
  ]
  return [
    `Where the median no-op's ${ms(total)} went, one after the other: ${path.join(', ')};`,
    `${ms(serial + Math.max(probing, at('ready'), at('in-cluster')))} in all. \`start\` is the process's start to dev-up's first step (Bun loading`,
    "devreg's modules, the config and the lock), `observe` is `docker ps` and the cluster network's members, at once;",
    "the mirrors phase is one `docker exec` per node (its reads and verify's probe pulls), verify one `docker logs`",
    'per registry, ready one `kubectl get`, in-cluster one `kubectl apply`. Each is a program of its own, about ten',
    'in all, each an answer the no-op must have; on 2 CPUs they share the cores with the node and the registries.',
  ]
}

function warmPullsMarkdown(m: KindMeasurement, r: Medians): string[] {
  return [
    `**Warm pulls in a real kind node through CRI**: the pulls section's ${m.images} images (${MB(m.imageBytes)}, at ${SCALE} of`,
    "the note's sizes) warmed once through a node, then `dev-down` and `dev-up` (a new cluster, " +
      `${ms(m.recreateMs)}), and CRI \`PullImage\``,
    'of every image one after another in the new node: `docker.io/…` through the cache, against the same images from',
    `the plain local registry (the floor). Median of ${m.warm.length} each, alternated, each after CRI \`RemoveImage\` of the last pull`,
    '(each pull fetched every blob again); the first warm run is the first pull in the fresh node. Manifest requests',
    "are the upstream's access log from the `dev-down` to the last pull: a warm pull through a proxy cache asks the",
    'upstream one `HEAD` per tag (Docker Hub does not count it against its rate limit) and no `GET`.',
    '',
    '| CRI pull in the new node | wall time | runs | blob bytes from the upstream | manifest requests to the upstream |',
    '| --- | ---: | --- | ---: | ---: |',
    `| through the warm cache | ${ms(r.warmMs)} | ${each(m.warm)} | ${MB(m.warmUpstreamBytes)} | ${byMethod(m.warmManifests)} |`,
    `| from the plain local registry (the floor) | ${ms(r.floorMs)} | ${each(m.floor)} | - | - |`,
    `| ratio | ${r.pullRatio.toFixed(2)}x | | | |`,
  ]
}

function kindChecks(m: KindMeasurement, r: Medians): Check[] {
  return [
    {
      target: `\`dev-up\` on warm caches at most ${DEV_UP_MAX}x a bare \`kind create cluster\` (real kind)`,
      measured: `${r.createRatio.toFixed(2)}x`,
      met: r.createRatio <= DEV_UP_MAX,
    },
    {
      target: `no-op \`dev-up\` with verify at most ${NOOP_MAX}x \`kind get nodes\` + one \`kubectl get\` (real kind)`,
      measured: `${r.noopRatio.toFixed(2)}x`,
      met: r.noopRatio <= NOOP_MAX,
    },
    {
      target: `warm CRI pull in a re-created kind node within ${WARM_FLOOR_MAX}x of the local-registry floor`,
      measured: `${r.pullRatio.toFixed(2)}x`,
      met: r.pullRatio <= WARM_FLOOR_MAX,
    },
    {
      target: 'a warm re-create and its CRI pulls make 0 manifest `GET`s to the upstream',
      measured: `${m.warmManifests.GET ?? 0} GETs (${m.warmManifests.HEAD ?? 0} HEADs)`,
      met: (m.warmManifests.GET ?? 0) === 0,
    },
    {
      target: 'warm CRI pulls in a re-created kind node fetch 0 blob bytes from the upstream',
      measured: `${m.warmUpstreamBytes} bytes`,
      met: m.warmUpstreamBytes === 0,
    },
  ]
}
