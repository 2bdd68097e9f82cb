// A devreg world for an integration or e2e test, as one object: a network,
// fake upstreams (plain registries, seeded on request), the local registry and
// a cache per mirror, the config file naming them, and optionally a real kind
// or k3d cluster in the rig; built before the tests, removed after them
// (clusters by dev-down, everything else by the fixture's prefix).
// Names are fixed when the world is declared, so a describe block can take
// them apart at once; ports, containers and the config exist after build().
import { afterAll, beforeAll } from 'bun:test'
import { $ } from 'zx'
import { Fixture, freePort, kindEnv, rigK3sImage, rigNodeImages, runScript, type ScriptResult, waitHttp } from './fixture.ts'
import { REGISTRY_IMAGE, type Sample } from './images.ts'
import { seed } from './registry.ts'

export interface MirrorSpec {
  host: string
  /** Base name of the fake upstream it pulls from; mirrors naming the same one share it. [default: upstream] */
  upstream?: string
  /** Base name of its cache container. [default: cache-HOST with dashes] */
  cache?: string
  /** Base name of a volume of its own instead of the one devreg derives from the cache's name. */
  volume?: string
  /** The cache's image. [default: the local registry's] */
  image?: string
}

export interface WorldSpec {
  /** One cache per mirror, each in front of a fake upstream. [default: docker.io] */
  mirrors?: MirrorSpec[]
  /** Base names of fake upstreams no mirror names, for caches a test configures itself. */
  upstreams?: string[]
  /** Samples pushed to the first upstream as library/NAME:1. */
  seed?: Sample[]
  /** The local registry's image. [default: REGISTRY_IMAGE] */
  registryImage?: string
  /**
   * A real cluster in the rig (e2e tests only; its network is named after the
   * provider). Without one the config still names a cluster of the test's
   * own, so no lock or node lookup meets another test's.
   */
  cluster?: { provider: Provider; name?: string; workers?: number; nodeImage?: string }
  /** Config keys besides cluster, registry and mirrors (aliases, images, hosts). */
  config?: Record<string, unknown>
  /** Environment for every script run, over the cluster's. */
  env?: Record<string, string>
}

export interface Upstream {
  name: string
  port: number
  /** How the caches reach it on the network. */
  url: string
}
export interface LocalRegistry {
  name: string
  port: number
  image: string
  volume: string
}
export interface Cache {
  name: string
  port: number
}

type Doc = Record<string, unknown>
type Provider = 'kind' | 'k3d'
const q = () => $({ quiet: true })

/** Each provider as the rig runs it: its node image there, and the containers it names a cluster's nodes. */
const RIG: Record<Provider, { nodeImage: () => string; nodes: (cluster: string, workers: number[]) => string[] }> = {
  kind: {
    nodeImage: () => rigNodeImages()[0].image,
    nodes: (cluster, workers) => [`${cluster}-control-plane`, ...workers.map((i) => `${cluster}-worker${i ? i + 1 : ''}`)],
  },
  k3d: {
    nodeImage: rigK3sImage,
    nodes: (cluster, workers) => [`k3d-${cluster}-server-0`, ...workers.map((i) => `k3d-${cluster}-agent-${i}`)],
  },
}

export class World {
  readonly fx = new Fixture()
  readonly network: string
  /** Fake upstreams by base name; `upstream` is the first mirror's (or the first of spec.upstreams). */
  readonly upstreams: Record<string, Upstream> = {}
  readonly upstream: Upstream
  readonly registry: LocalRegistry
  /** One per mirror, in the config's order; `cache` is the first. */
  readonly caches: Cache[]
  readonly cache: Cache
  readonly clusterName: string
  /** The cluster's node containers, control plane (or server) first; `node` is the first. */
  readonly nodes: string[]
  readonly node: string
  readonly env: Record<string, string>
  /** The config file scripts run with: the world's own, or one a test points it at. */
  config = ''
  private readonly spec: WorldSpec
  private readonly mirrorSection: (() => Doc)[]
  private readonly clusterSection: Doc
  private readonly extra: Doc = {}
  private readonly written = new Map<string, Doc>()
  /** Cluster name → the config a real dev-up last ran with: each is brought down at cleanup. */
  private readonly brought = new Map<string, string>()
  /** Upstream container → the caches in front of it. */
  private readonly fronting = new Map<string, string[]>()

  constructor(spec: WorldSpec = {}) {
    this.spec = spec
    const { fx } = this
    const cluster = spec.cluster
    this.network = fx.name(cluster?.provider ?? 'net', 'network')
    const mirrors = spec.mirrors ?? [{ host: 'docker.io' }]
    const upstreamNamed = (base: string) => {
      const name = fx.name(base)
      this.upstreams[base] ??= { name, port: 0, url: `http://${name}:5000` }
      return this.upstreams[base]
    }
    this.caches = mirrors.map((m) => ({ name: fx.name(m.cache ?? `cache-${m.host.replace(/[.:]/g, '-')}`), port: 0 }))
    this.mirrorSection = mirrors.map((m, i) => {
      const upstream = upstreamNamed(m.upstream ?? 'upstream')
      this.fronting.set(upstream.name, [...(this.fronting.get(upstream.name) ?? []), this.caches[i].name])
      const volume = m.volume && fx.name(m.volume, 'volume')
      return () => ({
        host: m.host,
        upstream: upstream.url,
        ...this.caches[i],
        ...(m.image && { image: m.image }),
        ...(volume && { volume }),
      })
    })
    for (const base of spec.upstreams ?? []) upstreamNamed(base)
    this.upstream = Object.values(this.upstreams)[0]
    this.cache = this.caches[0]
    this.registry = {
      name: fx.name('registry'),
      port: 0,
      image: spec.registryImage ?? REGISTRY_IMAGE,
      volume: fx.name('registry-data', 'volume'),
    }
    this.clusterName = fx.name(cluster?.name ?? 'c')
    this.clusterSection = { name: this.clusterName, network: this.network }
    if (cluster) {
      Object.assign(this.clusterSection, { provider: cluster.provider, waitTimeout: '60s' })
      if (cluster.workers) this.clusterSection.workers = cluster.workers
    }
    const workers = Array.from({ length: cluster?.workers ?? 0 }, (_, i) => i)
    this.nodes = RIG[cluster?.provider ?? 'kind'].nodes(this.clusterName, workers)
    this.node = this.nodes[0]
    this.env = { ...(cluster ? kindEnv(fx) : {}), ...spec.env }
  }

  /** Creates the network, starts and seeds the upstreams, takes the registries' ports, writes the config. */
  async build(): Promise<void> {
    const cluster = this.spec.cluster
    // Asked when built, not when declared: a block skipped for want of Docker never asks.
    if (cluster) this.clusterSection.nodeImage = cluster.nodeImage ?? RIG[cluster.provider].nodeImage()
    await q()`docker network create ${this.network}`
    for (const upstream of Object.values(this.upstreams)) {
      upstream.port = await freePort()
      await q()`docker run -d --name ${upstream.name} --network ${this.network} -p ${`127.0.0.1:${upstream.port}:5000`} ${REGISTRY_IMAGE}`
      await waitHttp(`http://127.0.0.1:${upstream.port}/v2/`)
    }
    for (const sample of this.spec.seed ?? []) await seed(this.upstream.port, sample, `library/${sample}`)
    this.registry.port = await freePort()
    for (const cache of this.caches) cache.port = await freePort()
    this.config = this.configFile()
  }

  /**
   * The config document; `over` replaces top-level keys, except `cluster`,
   * whose keys are merged into the world's cluster section.
   */
  doc(over: Doc = {}): Doc {
    const { cluster, ...rest } = over as { cluster?: Doc }
    return {
      cluster: { ...this.clusterSection, ...cluster },
      registry: this.registry,
      mirrors: this.mirrorDocs(),
      ...this.spec.config,
      ...this.extra,
      ...rest,
    }
  }

  /** The config's mirror entries, for a doc that changes one of them. */
  mirrorDocs(): Doc[] {
    return this.mirrorSection.map((section) => section())
  }

  /** Writes doc(over) to a file of the test's own; devreg.yaml is the world's config. */
  configFile(over: Doc = {}, file = 'devreg.yaml'): string {
    const doc = this.doc(over)
    const path = this.fx.config(doc, file)
    this.written.set(path, doc)
    return path
  }

  /** Adds config keys every doc has from now on (say, what only exists once the world is built), and rewrites the config. */
  amend(extra: Doc): void {
    Object.assign(this.extra, extra)
    this.config = this.configFile()
  }

  /** Runs scripts/NAME.ts with --config (the world's unless given) and the world's environment. */
  run(script: string, args: string[] = [], opts: { config?: string; env?: Record<string, string> } = {}): Promise<ScriptResult> {
    const config = opts.config ?? this.config
    if (script === 'dev-up' && !args.includes('--dry-run'))
      this.brought.set(String((this.written.get(config)?.cluster as Doc | undefined)?.name ?? config), config)
    return runScript(script, ['--config', config, ...args], { env: { ...this.env, ...opts.env } })
  }

  devUp(...args: string[]): Promise<ScriptResult> {
    return this.run('dev-up', args)
  }

  devDown(...args: string[]): Promise<ScriptResult> {
    return this.run('dev-down', args)
  }

  devRegistry(...args: string[]): Promise<ScriptResult> {
    return this.run('dev-registry', args)
  }

  /** The container's address on the world's network. */
  async addressOn(container: string): Promise<string> {
    const format = `{{(index .NetworkSettings.Networks "${this.network}").IPAddress}}`
    return (await q()`docker inspect --format ${format} ${container}`).stdout.trim()
  }

  /** Runs check with the container stopped; starts it again afterwards, and waits until it answers when it is one of the world's registries. */
  async stopped<T>(container: string, check: () => Promise<T>): Promise<T> {
    await q()`docker stop ${container}`
    try {
      return await check()
    } finally {
      await q()`docker start ${container}`
      const port = this.portOf(container)
      if (port) await waitHttp(`http://127.0.0.1:${port}/v2/`)
      await this.proxyingAgain(container)
    }
  }

  /**
   * Waits until each running cache in front of `upstream` serves as a proxy
   * again: a cache that saw its upstream gone went read-only and probes it
   * only every few seconds, and the next test expects the world as built.
   */
  private async proxyingAgain(upstream: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    const url = Object.values(this.upstreams).find((u) => u.name === upstream)?.url
    for (const cache of this.fronting.get(upstream) ?? []) {
      // Only a cache still configured as the world built it (a test may point it elsewhere).
      const env = await $({ quiet: true, nothrow: true })`docker inspect --format ${'{{json .Config.Env}}'} ${cache}`
      if (!env.stdout.includes(`"REGISTRY_PROXY_REMOTEURL=${url}"`)) continue
      for (;;) {
        const mode = await $({ quiet: true, nothrow: true })`docker exec ${cache} cat /tmp/devreg-mode`
        if (mode.exitCode !== 0 || mode.stdout.trim() === 'proxy') break
        if (Date.now() > deadline)
          throw new Error(`cache ${cache} still serves read-only ${timeoutMs / 1000} s after ${upstream} came back`)
        await new Promise((r) => setTimeout(r, 500))
      }
    }
  }

  /** Runs check with the container off the world's network; connects it again afterwards. */
  async disconnected<T>(container: string, check: () => Promise<T>): Promise<T> {
    await q()`docker network disconnect ${this.network} ${container}`
    try {
      return await check()
    } finally {
      await q()`docker network connect ${this.network} ${container}`
      await this.proxyingAgain(container)
    }
  }

  /** Runs check while the container's network namespace drops every packet to port 5000: an upstream gone silent, not refusing. */
  async dropped<T>(container: string, check: () => Promise<T>): Promise<T> {
    const pid = (await q()`docker inspect --format {{.State.Pid}} ${container}`).stdout.trim()
    const rule = ['INPUT', '-p', 'tcp', '--dport', '5000', '-j', 'DROP']
    await q()`nsenter -t ${pid} -n iptables -I ${rule}`
    try {
      return await check()
    } finally {
      await q()`nsenter -t ${pid} -n iptables -D ${rule}`
      await this.proxyingAgain(container)
    }
  }

  /** Runs change, then puts the container's file back as it was and runs `restored` (a restart that reads it, say), whatever happened. */
  async restoring<T>(container: string, file: string, change: () => Promise<T>, restored?: () => Promise<void>): Promise<T> {
    const saved = (await q()`docker exec ${container} cat ${file}`).stdout
    try {
      return await change()
    } finally {
      await $({ quiet: true, input: saved })`docker exec -i ${container} sh -c ${`cat > "$1"`} sh ${file}`
      await restored?.()
    }
  }

  /** Brings down every cluster a dev-up made, then removes every Docker object and file of the fixture. */
  async cleanup(): Promise<void> {
    for (const config of this.brought.values()) await runScript('dev-down', ['--config', config], { env: this.env })
    await this.fx.cleanup()
  }

  private portOf(container: string): number | undefined {
    return [this.registry, ...this.caches, ...Object.values(this.upstreams)].find((r) => r.name === container)?.port
  }
}

/**
 * Declares a world for the enclosing describe block: built before its tests,
 * then `ready` runs (a dev-up, say); cleaned up after them.
 */
export function useWorld(spec: WorldSpec = {}, ready?: (w: World) => Promise<void>): World {
  const w = new World(spec)
  beforeAll(async () => {
    await w.build()
    await ready?.(w)
  })
  afterAll(() => w.cleanup())
  return w
}
