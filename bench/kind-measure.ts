// The measuring half of bench/kind.ts. It runs inside the test rig's network
// namespace with the rig's environment (DOCKER_HOST is the private engine,
// the real kind 0.33 first on PATH), because the engine publishes ports on
// that namespace's loopback, and prints its measurements as one JSON object.
// Everything it creates in the engine is named ID-* and removed at the end.
//
// Usage: nsenter --net=/run/netns/devreg-rig bun bench/kind-measure.ts ID NODE_IMAGE
import { join } from 'node:path'
import { $, type Shell } from 'zx'
import { logFields } from '../scripts/lib/registries/registry-log.ts'
import { criPull, criRemove } from '../test/kit/cri.ts'
import { prepareImages, REGISTRY_IMAGE } from '../test/kit/images.ts'
import type { PushedImage } from '../test/kit/push.ts'
import { servedBlobBytes } from '../test/kit/registry.ts'
import { freePort, script, timed, Workspace } from './harness.ts'
import { pushNoteImages, waitCached } from './pulls.ts'

/** Runs of each timed step; the section reports medians. */
const RUNS = 3
/** Runs of the no-op dev-up and its floor (each a few seconds at most). */
const NOOP_RUNS = 5

export interface KindMeasurement {
  versions: { kind: string; engine: string; containerd: string }
  nodeImage: string
  /** `dev-up` on warm caches, cluster absent: wall times and each run's phases (ms). */
  devUp: { ms: number; phases: Record<string, number> }[]
  /** Bare `kind create cluster` with the same node image and node count. */
  bare: number[]
  /** `dev-up` on the live cluster that changed nothing, verify included: wall times, phases (ms) and verify's verdicts. */
  noop: { ms: number; phases: Record<string, number>; verify: Record<string, number> }[]
  /** The floor of a no-op: `kind get nodes` and one kubectl read, one after the other. */
  noopFloor: number[]
  nodes: number
  images: number
  imageBytes: number
  /** The dev-up that re-created the cluster for the warm pulls. */
  recreateMs: number
  /** CRI pulls of every image in the new node: through the cache (the first run in the fresh node), and from the local registry. */
  warm: number[]
  floor: number[]
  /** Blob bytes the upstream served during the warm pulls. */
  warmUpstreamBytes: number
  /** Manifest requests the upstream answered, by method, from the dev-down before the re-create to the last warm pull. */
  warmManifests: Record<string, number>
  /** How often containerd started in the node of the last created cluster (more than once: kind restarted it). */
  containerdStarts: number
}

const log = (line: string) => process.stderr.write(`  ${line}\n`)

/** What the measuring steps share: the registries, the config and how to run kind and devreg's scripts. */
interface KindRig {
  nodeImage: string
  upstream: string
  cluster: string
  bareCluster: string
  /** The control-plane node of `cluster`. */
  node: string
  registry: { name: string; port: number }
  cache: { name: string; port: number }
  /** The devreg config's path. */
  config: string
  /** Added to the environment of devreg's scripts. */
  env: Record<string, string>
  /** zx with that environment and kind's network. */
  kind: Shell
  images: PushedImage[]
  imageBytes: number
  refs: (host: string) => string[]
}

async function measure(nodeImage: string, ws: Workspace): Promise<KindMeasurement> {
  // 1. An upstream and devreg's registries on one network; the note's images in the upstream and the local registry.
  const rig = await setUpRig(nodeImage, ws)
  // 2. dev-up on warm caches against a bare kind create, alternated; the last dev-up's cluster stays.
  const { devUp, bare } = await measureCreation(rig)
  // 3. A no-op dev-up on that live cluster, verify (its last phase) included, against the floor of asking whether the
  // cluster is there: `kind get nodes`, then one kubectl read (the ConfigMap devreg applies). Alternated.
  const { noop, noopFloor } = await measureNoop(rig)
  const { kind, cluster, node } = rig
  const nodes = (await kind`kind get nodes --name ${cluster}`).stdout.trim().split('\n').filter(Boolean).length
  const versions = {
    kind: (await kind`kind version`).stdout.trim(),
    engine: (await $({ quiet: true })`docker version --format {{.Server.Version}}`).stdout.trim(),
    containerd: (await $({ quiet: true })`docker exec ${node} containerd --version`).stdout.trim(),
  }
  const journal = (await $({ quiet: true })`docker exec ${node} journalctl -u containerd -o cat`).stdout
  const containerdStarts = journal.match(/starting containerd/g)?.length ?? 0
  // 4. Warm the cache once through a node, then pull the same images in the node of a re-created cluster.
  const pulls = await measureWarmPulls(rig)
  return {
    versions,
    nodeImage,
    devUp,
    bare,
    noop,
    noopFloor,
    nodes,
    images: rig.images.length,
    imageBytes: rig.imageBytes,
    containerdStarts,
    ...pulls,
  }
}

async function setUpRig(nodeImage: string, ws: Workspace): Promise<KindRig> {
  await prepareImages()
  const network = await ws.network()
  const upstreamPort = await freePort()
  const upstream = await ws.upstream(network, upstreamPort)
  const cluster = ws.name('c')
  const registry = { name: ws.name('registry'), port: await freePort(), image: REGISTRY_IMAGE, volume: ws.name('registry-data') }
  const cache = { name: ws.name('cache-docker-io'), port: await freePort() }
  const config = ws.config({
    cluster: { provider: 'kind', name: cluster, network, nodeImage, waitTimeout: '120s' },
    registry,
    mirrors: [{ host: 'docker.io', upstream: `http://${upstream}:5000`, ...cache }],
  })
  // A kubeconfig of this run's own, for both clusters; the real kubectl is on PATH (bench/kind.ts).
  const env = { KUBECONFIG: join(ws.dir, 'kubeconfig') }
  const kind = $({ quiet: true, env: { ...process.env, ...env, KIND_EXPERIMENTAL_DOCKER_NETWORK: network } })
  await script('dev-registry', ['--config', config], env)
  const { images, imageBytes } = await pushNoteImages([upstreamPort, registry.port])
  const refs = (host: string) => images.map((i) => `${host}/${i.repo}:${i.tag}`)
  const node = `${cluster}-control-plane`
  return { nodeImage, upstream, cluster, bareCluster: ws.name('bare'), node, registry, cache, config, env, kind, images, imageBytes, refs }
}

async function measureCreation({ nodeImage, bareCluster, config, env, kind }: KindRig): Promise<Pick<KindMeasurement, 'devUp' | 'bare'>> {
  const devUp: KindMeasurement['devUp'] = []
  const bare: number[] = []
  for (let i = 0; i < RUNS; i++) {
    log(`cluster creation, run ${i + 1} of ${RUNS}`)
    bare.push(await timed(() => kind`kind create cluster --name ${bareCluster} --image ${nodeImage}`))
    await kind`kind delete cluster --name ${bareCluster}`
    let out = ''
    const ms = await timed(async () => {
      out = await script('dev-up', ['--config', config, '--json'], env)
    })
    devUp.push({ ms, phases: JSON.parse(out).phases })
    if (i < RUNS - 1) await script('dev-down', ['--config', config], env)
  }
  return { devUp, bare }
}

async function measureNoop({ cluster, config, env, kind }: KindRig): Promise<Pick<KindMeasurement, 'noop' | 'noopFloor'>> {
  const context = `kind-${cluster}`
  const floorCalls = async () => {
    await kind`kind get nodes --name ${cluster}`
    await kind`kubectl --context ${context} get configmap local-registry-hosting -n kube-public -o json`
  }
  const noop: KindMeasurement['noop'] = []
  const noopFloor: number[] = []
  for (let i = 0; i < NOOP_RUNS; i++) {
    log(`no-op dev-up, run ${i + 1} of ${NOOP_RUNS}`)
    noopFloor.push(await timed(floorCalls))
    let out = ''
    const ms = await timed(async () => {
      out = await script('dev-up', ['--config', config, '--json'], env)
    })
    const s = JSON.parse(out) as {
      created: boolean
      changes: string[]
      phases: Record<string, number>
      verify: Record<string, number> | null
    }
    if (s.created || s.changes.length) throw new Error(`the no-op dev-up changed something: ${s.changes.join('; ')}`)
    if (!s.verify?.pass || s.verify.fail) throw new Error(`the no-op dev-up's verify did not pass: ${JSON.stringify(s.verify)}`)
    noop.push({ ms, phases: s.phases, verify: s.verify })
  }
  return { noop, noopFloor }
}

/** Manifest requests a registry answered, by method, from its access log (distribution's `response completed` lines). */
async function manifestRequests(container: string): Promise<Record<string, number>> {
  const logs = await $({ quiet: true })`docker logs ${container}`
  const counts: Record<string, number> = {}
  for (const line of `${logs.stdout}\n${logs.stderr}`.split('\n')) {
    if (!line.includes('response completed')) continue
    const f = logFields(line)
    if (!/^\/v2\/.+\/manifests\//.test(f['http.request.uri'] ?? '')) continue
    const method = f['http.request.method'] ?? '?'
    counts[method] = (counts[method] ?? 0) + 1
  }
  return counts
}

const minus = (after: Record<string, number>, before: Record<string, number>) =>
  Object.fromEntries(Object.entries(after).map(([method, n]) => [method, n - (before[method] ?? 0)]))

type WarmPulls = Pick<KindMeasurement, 'recreateMs' | 'warm' | 'floor' | 'warmUpstreamBytes' | 'warmManifests'>

async function measureWarmPulls(rig: KindRig): Promise<WarmPulls> {
  const { node, upstream, cache, registry, config, env, images, imageBytes, refs } = rig
  const pullAll = async (list: string[]) => {
    for (const ref of list) {
      const r = await criPull(node, ref)
      if (!r.ok) throw new Error(`CRI pull of ${ref} in ${node}: ${r.error}`)
    }
  }
  const removeAll = async (list: string[]) => {
    for (const ref of list) await criRemove(node, ref)
  }
  log(`warming the cache: ${images.length} images through ${node}`)
  await pullAll(refs('docker.io'))
  await waitCached(`${cache.name}-data`, images)
  const manifestsBefore = await manifestRequests(upstream)
  await script('dev-down', ['--config', config], env)
  const recreateMs = await timed(() => script('dev-up', ['--config', config], env))

  // Alternately through the cache and from the local registry, each after CRI removed the last pull (and
  // containerd its content): each pull must fetch every blob again, from the registry it names.
  const warm: number[] = []
  const floor: number[] = []
  let warmUpstreamBytes = 0
  for (let i = 0; i < RUNS; i++) {
    log(`CRI pulls in the new node, run ${i + 1} of ${RUNS}`)
    for (const [source, list, times] of [
      [cache.name, refs('docker.io'), warm],
      [registry.name, refs(`${registry.name}:5000`), floor],
    ] as const) {
      const [served, upstreamBefore] = [await servedBlobBytes(source), await servedBlobBytes(upstream)]
      times.push(await timed(() => pullAll(list)))
      const fetched = (await servedBlobBytes(source)) - served
      if (fetched < imageBytes)
        throw new Error(`${source} served ${fetched} of ${imageBytes} blob bytes: the node kept content from an earlier pull`)
      if (source === cache.name) warmUpstreamBytes += (await servedBlobBytes(upstream)) - upstreamBefore
      await removeAll(list)
    }
  }
  const warmManifests = minus(await manifestRequests(upstream), manifestsBefore)
  return { recreateMs, warm, floor, warmUpstreamBytes, warmManifests }
}

if (import.meta.main) {
  const [id, nodeImage] = process.argv.slice(2)
  if (!id || !nodeImage) {
    console.error('usage: bun bench/kind-measure.ts ID NODE_IMAGE   (inside the rig: see bench/kind.ts)')
    process.exit(2)
  }
  const ws = new Workspace(id)
  try {
    console.log(JSON.stringify(await measure(nodeImage, ws)))
  } finally {
    if (process.env.DEVREG_BENCH_KEEP === '1') log(`kept the rig's ${id}-* clusters, containers, volumes and networks`)
    else {
      const kind = $({ quiet: true, nothrow: true, env: { ...process.env, KUBECONFIG: join(ws.dir, 'kubeconfig') } })
      for (const c of [ws.name('c'), ws.name('bare')]) await kind`kind delete cluster --name ${c}`
      await ws.cleanup()
    }
  }
}
