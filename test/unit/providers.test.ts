// Node mirror reconciling against a fake runner: what dev-up writes into,
// removes from and restarts in a live cluster's nodes, and what it leaves alone.
import { describe, expect, test } from 'bun:test'
import { parse as parseYaml } from 'yaml'
import { desiredRegistriesYaml, K3S_REGISTRIES, k3d } from '../../scripts/lib/cluster/providers/k3d.ts'
import { CERTS_D, kind, kindHostsTomls } from '../../scripts/lib/cluster/providers/kind.ts'
import type { Cluster } from '../../scripts/lib/cluster/providers/provider.ts'
import { resolveConfig } from '../../scripts/lib/core/config.ts'
import { fakeRunner, on } from '../kit/fake-runner.ts'
import { k3dRegistriesYaml } from '../kit/k3d-registries.ts'

const config = resolveConfig({ mirrors: [{ host: 'docker.io' }, { host: 'ghcr.io' }] })
const desired = kindHostsTomls(config)
const nodes = ['dev-control-plane', 'dev-worker']
const cluster: Cluster = {
  provider: 'kind',
  name: 'dev',
  nodes: nodes.map((name, i) => ({ name, role: i ? 'worker' : 'control-plane', image: 'kindest/node', running: true })),
}

/** What templates/read-hosts-files.sh prints for these certs.d directories. */
const hostsFilesOutput = (files: Map<string, string>) => [...files].map(([dir, content]) => `\x1e${dir}\n${content}`).join('')
const CONFIG_DUMP = `[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = '${CERTS_D}'\n`
/** The node-files.sh arguments of each node's one exec, by node. */
const nodeEdits = (calls: { argv: string[] }[]) =>
  Object.fromEntries(
    calls.filter((c) => c.argv.includes('node-files')).map((c) => [c.argv[2], c.argv.slice(c.argv.indexOf('node-files') + 1)]),
  )

describe('kind: hosts.toml in every node', () => {
  test('nodes that hold exactly the desired files are left alone: no exec that writes', async () => {
    const run = fakeRunner([
      on(['docker', 'exec', /./, 'sh', '-c'], hostsFilesOutput(desired)),
      on(['docker', 'exec', /./, 'containerd', 'config', 'dump'], CONFIG_DUMP),
    ])
    expect(await kind.reconcile(run, config, cluster)).toEqual([])
    expect(run.changes).toEqual([])
  })

  test('a changed, a missing and a stale devreg file are fixed in one exec per node; a file devreg did not write stays', async () => {
    const [[localDir, localToml], [hubDir]] = desired
    const current = new Map(desired)
    current.set(localDir, `${localToml}# edited by hand\n`)
    current.delete(hubDir)
    current.set(`${CERTS_D}/quay.io`, `${localToml.split('\n')[0]}\nserver = "https://quay.io"\n`)
    current.set(`${CERTS_D}/corp.example`, 'server = "https://corp.example"\n')
    const run = fakeRunner([
      on(['docker', 'exec', /./, 'sh', '-c'], hostsFilesOutput(current)),
      on(['docker', 'exec', /./, 'containerd', 'config', 'dump'], CONFIG_DUMP),
    ])
    const changes = await kind.reconcile(run, config, cluster)
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

  test('a node whose containerd does not read certs.d is an error that says to recreate, before any write', async () => {
    const run = fakeRunner([
      on(['docker', 'exec', /./, 'sh', '-c'], ''),
      on(['docker', 'exec', /./, 'containerd', 'config', 'dump'], '[plugins]\n'),
    ])
    await expect(kind.reconcile(run, config, cluster)).rejects.toThrow('recreate the cluster with `dev-up --recreate`')
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
    const run = fakeRunner([on(['docker', 'exec', 'k3d-dev-server-0', 'cat', K3S_REGISTRIES], asK3dWritesIt)])
    expect(await k3d.reconcile(run, k3dConfig, k3dCluster)).toEqual([])
    expect(run.changes.filter((l) => !l.startsWith('# write'))).toEqual([])
  })

  test('other routing is written into each node, then the cluster is stopped and started', async () => {
    const run = fakeRunner([on(['docker', 'exec', 'k3d-dev-server-0', 'cat', K3S_REGISTRIES], 'mirrors: {}\n')])
    const changes = await k3d.reconcile(run, k3dConfig, k3dCluster)
    expect(changes).toEqual([`rewrote ${K3S_REGISTRIES} in k3d-dev-server-0 and restarted them (k3s reads it only at start)`])
    expect(nodeEdits(run.calls)['k3d-dev-server-0']).toEqual(['write', K3S_REGISTRIES, wanted])
    expect(run.changes.slice(-2)).toEqual(['k3d cluster stop dev', 'k3d cluster start dev'])
  })
})

describe('desired and observed mirrors compare per registry host', () => {
  test('kind: a node holding what dev-up writes observes exactly the desired routing', async () => {
    const run = fakeRunner([on(['docker', 'exec', 'n', 'sh', '-c'], hostsFilesOutput(desired))])
    const want = kind.desiredMirrors(config)
    expect([...want.keys()]).toEqual(['localhost:5001', 'kind-registry:5000', 'docker.io', 'ghcr.io'])
    expect(await kind.observedMirrors(run, 'n')).toEqual(want)
  })

  test('k3d: k3d’s re-serialisation observes as the desired routing; a node without registries.yaml has none', async () => {
    const k3dConfig = resolveConfig({ cluster: { provider: 'k3d', name: 'dev' }, mirrors: [{ host: 'docker.io' }] })
    const endpoints = parseYaml(desiredRegistriesYaml(k3dConfig)).mirrors as Record<string, { endpoint: string[] }>
    const asK3dWritesIt = k3dRegistriesYaml(Object.fromEntries(Object.entries(endpoints).map(([h, m]) => [h, m.endpoint])))
    const run = fakeRunner([on(['docker', 'exec', 'n', 'cat', K3S_REGISTRIES], asK3dWritesIt)])
    expect(await k3d.observedMirrors(run, 'n')).toEqual(k3d.desiredMirrors(k3dConfig))
    expect(await k3d.observedMirrors(fakeRunner(), 'n')).toBeNull()
  })
})
