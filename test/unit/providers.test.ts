// Node mirror reconciling against a fake runner: what dev-up writes into,
// removes from and restarts in a live cluster's nodes, and what it leaves alone.
import { describe, expect, test } from 'bun:test'
import { parse as parseYaml } from 'yaml'
import { type NodeSnapshot, observeNode } from '../../scripts/lib/cluster/nodes.ts'
import { desiredRegistriesYaml, K3S_REGISTRIES, k3d } from '../../scripts/lib/cluster/providers/k3d.ts'
import { CERTS_D, kind, kindHostsTomls } from '../../scripts/lib/cluster/providers/kind.ts'
import type { Cluster } from '../../scripts/lib/cluster/providers/provider.ts'
import { resolveConfig } from '../../scripts/lib/core/config.ts'
import { fakeRunner, on } from '../kit/fake-runner.ts'
import { k3dRegistriesYaml } from '../kit/k3d-registries.ts'
import { containerd23, nodeOutput } from '../kit/node-output.ts'

const config = resolveConfig({ mirrors: [{ host: 'docker.io' }, { host: 'ghcr.io' }] })
const desired = kindHostsTomls(config)
const nodes = ['dev-control-plane', 'dev-worker']
const cluster: Cluster = {
  provider: 'kind',
  name: 'dev',
  nodes: nodes.map((name, i) => ({ name, role: i ? 'worker' : 'control-plane', image: 'kindest/node', running: true })),
}

/** Each node of `c` as its one exec reads it, answered by the fake runner with observe-node.sh's output. */
async function observed(run: ReturnType<typeof fakeRunner>, c: Cluster, provider: typeof kind): Promise<Map<string, NodeSnapshot>> {
  const read = await Promise.all(c.nodes.map((n) => observeNode(run, n.name, provider.nodeRead)))
  return new Map(read.map((s) => [s.node, s]))
}
/** The node-files.sh arguments of each node's one exec, by node. */
const nodeEdits = (calls: { argv: string[] }[]) =>
  Object.fromEntries(
    calls.filter((c) => c.argv.includes('node-files')).map((c) => [c.argv[2], c.argv.slice(c.argv.indexOf('node-files') + 1)]),
  )

describe('kind: hosts.toml in every node', () => {
  test('nodes that hold exactly the desired files are left alone: one exec per node reads them, none writes', async () => {
    const run = fakeRunner([on(['docker', 'exec', /./, 'sh', '-c'], nodeOutput({ hosts: desired, containerd: containerd23(CERTS_D) }))])
    expect(await kind.reconcile(run, config, cluster, await observed(run, cluster, kind))).toEqual([])
    expect(run.calls.map((c) => c.argv.slice(0, 3).join(' '))).toEqual(nodes.map((n) => `docker exec ${n}`))
    expect(run.changes).toEqual([])
  })

  test('a changed, a missing and a stale devreg file are fixed in one exec per node; a file devreg did not write stays', async () => {
    const [[localDir, localToml], [hubDir]] = desired
    const current = new Map(desired)
    current.set(localDir, `${localToml}# edited by hand\n`)
    current.delete(hubDir)
    current.set(`${CERTS_D}/quay.io`, `${localToml.split('\n')[0]}\nserver = "https://quay.io"\n`)
    current.set(`${CERTS_D}/corp.example`, 'server = "https://corp.example"\n')
    const run = fakeRunner([on(['docker', 'exec', /./, 'sh', '-c'], nodeOutput({ hosts: current, containerd: containerd23(CERTS_D) }))])
    const changes = await kind.reconcile(run, config, cluster, await observed(run, cluster, kind))
    expect(changes).toEqual(
      nodes.flatMap((n) => [
        `${n}: removed ${CERTS_D}/quay.io/hosts.toml (no longer in the config)`,
        `${n}: rewrote ${localDir}/hosts.toml`,
        `${n}: wrote ${hubDir}/hosts.toml`,
      ]),
    )
    const edits = nodeEdits(run.calls)
    for (const n of nodes)
      expect(edits[n]).toEqual([
        'write',
        `${localDir}/hosts.toml`,
        localToml,
        'write',
        `${hubDir}/hosts.toml`,
        desired.get(hubDir) as string,
        'remove',
        `${CERTS_D}/quay.io`,
      ])
    expect(run.changes).toHaveLength(nodes.length)
  })

  test('containerd 2.3 with no config_path and no mirrors reads certs.d by its default, which its dump shows empty', async () => {
    const run = fakeRunner([on(['docker', 'exec', /./, 'sh', '-c'], nodeOutput({ hosts: desired, containerd: containerd23('') }))])
    expect(await kind.reconcile(run, config, cluster, await observed(run, cluster, kind))).toEqual([])
  })

  test('a node whose containerd does not read certs.d is an error that says to recreate, before any write', async () => {
    const older = { version: 'containerd containerd.io 2.1.9', config: '[plugins]\n' }
    const run = fakeRunner([on(['docker', 'exec', /./, 'sh', '-c'], nodeOutput({ containerd: older }))])
    const seen = await observed(run, cluster, kind)
    await expect(kind.reconcile(run, config, cluster, seen)).rejects.toThrow('recreate the cluster with `dev-up --recreate`')
    expect(run.changes).toEqual([])
  })
})

describe('k3d: registries.yaml, read by k3s only at start', () => {
  const k3dConfig = resolveConfig({ cluster: { provider: 'k3d', name: 'dev' }, mirrors: [{ host: 'docker.io' }] })
  const k3dCluster: Cluster = {
    provider: 'k3d',
    name: 'dev',
    nodes: [{ name: 'k3d-dev-server-0', role: 'server', image: 'rancher/k3s', running: true }],
  }
  const wanted = desiredRegistriesYaml(k3dConfig)
  /** k3d's re-serialisation of devreg's file, as the nodes hold it. */
  const endpoints = parseYaml(wanted).mirrors as Record<string, { endpoint: string[] }>
  const asK3dWritesIt = k3dRegistriesYaml(Object.fromEntries(Object.entries(endpoints).map(([h, m]) => [h, m.endpoint])))

  test('k3d’s own rewrite of the same routing restarts nothing', async () => {
    const run = fakeRunner([on(['docker', 'exec', 'k3d-dev-server-0', 'sh'], nodeOutput({ files: { [K3S_REGISTRIES]: asK3dWritesIt } }))])
    expect(await k3d.reconcile(run, k3dConfig, k3dCluster, await observed(run, k3dCluster, k3d))).toEqual([])
    expect(run.changes.filter((l) => !l.startsWith('# write'))).toEqual([])
  })

  test('other routing is written into each node, then the cluster is stopped and started', async () => {
    const run = fakeRunner([on(['docker', 'exec', 'k3d-dev-server-0', 'sh'], nodeOutput({ files: { [K3S_REGISTRIES]: 'mirrors: {}\n' } }))])
    const changes = await k3d.reconcile(run, k3dConfig, k3dCluster, await observed(run, k3dCluster, k3d))
    expect(changes).toEqual([`rewrote ${K3S_REGISTRIES} in k3d-dev-server-0 and restarted them (k3s reads it only at start)`])
    expect(nodeEdits(run.calls)['k3d-dev-server-0']).toEqual(['write', K3S_REGISTRIES, wanted])
    expect(run.changes.slice(-2)).toEqual(['k3d cluster stop dev', 'k3d cluster start dev'])
  })
})

describe('desired and observed mirrors compare per registry host', () => {
  test('kind: a node holding what dev-up writes observes exactly the desired routing', async () => {
    const run = fakeRunner([on(['docker', 'exec', 'n', 'sh', '-c'], nodeOutput({ hosts: desired }))])
    const want = kind.desiredMirrors(config)
    expect([...want.keys()]).toEqual(['localhost:5001', 'kind-registry:5000', 'docker.io', 'ghcr.io'])
    expect(kind.observedMirrors(await observeNode(run, 'n', kind.nodeRead))).toEqual(want)
  })

  test('k3d: k3d’s re-serialisation observes as the desired routing; a node without registries.yaml has none', async () => {
    const k3dConfig = resolveConfig({ cluster: { provider: 'k3d', name: 'dev' }, mirrors: [{ host: 'docker.io' }] })
    const endpoints = parseYaml(desiredRegistriesYaml(k3dConfig)).mirrors as Record<string, { endpoint: string[] }>
    const asK3dWritesIt = k3dRegistriesYaml(Object.fromEntries(Object.entries(endpoints).map(([h, m]) => [h, m.endpoint])))
    const run = fakeRunner([on(['docker', 'exec', 'n', 'sh'], nodeOutput({ files: { [K3S_REGISTRIES]: asK3dWritesIt } }))])
    expect(k3d.observedMirrors(await observeNode(run, 'n', k3d.nodeRead))).toEqual(k3d.desiredMirrors(k3dConfig))
    expect(k3d.observedMirrors(await observeNode(fakeRunner(), 'n', k3d.nodeRead))).toBeNull()
  })
})
