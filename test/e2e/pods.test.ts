// Pods on the rig's kind node of kindest/node's containerd line (a real
// kubelet, the real `kubeadm init` with its static pods, kubeadm's CoreDNS and
// kube-proxy, a bridge pod network): the kubelet pulls a docker.io/library image through devreg's
// cache, a re-created cluster starts it from the cache alone, and a pod reaches
// the local registry by its Service name through CoreDNS, kube-proxy and the
// EndpointSlice devreg writes, also after the registry moved.
import { expect, test } from 'bun:test'
import { $ } from 'zx'
import { integration } from '../kit/fixture.ts'
import { TOOLBOX_IMAGE } from '../kit/images.ts'
import { blobGets, eventually, manifestBlobs, pull, waitStored } from '../kit/registry.ts'
import { useWorld } from '../kit/world.ts'

const q = () => $({ quiet: true })
const IMAGE = 'docker.io/library/toolbox:1'

integration('pods on the real kubelet of a kind node', () => {
  const w = useWorld({ cluster: { provider: 'kind' } }, async (w) => {
    // The fake hub serves an image that runs, as library/toolbox:1.
    const ref = `127.0.0.1:${w.upstream.port}/library/toolbox:1`
    await q()`docker tag ${TOOLBOX_IMAGE} ${ref}`
    await q()`docker push ${ref}`
    const r = await w.devUp()
    if (r.code !== 0) console.error(r.stderr)
    expect(r.code).toBe(0)
  })
  const { env, upstream, registry, cache, fx, network } = w

  const kubectl = (args: string[], input?: string) =>
    $({ quiet: true, nothrow: true, input, env: { ...process.env, ...env } })`kubectl --context ${`kind-${w.clusterName}`} ${args}`

  /**
   * Creates a pod running `command` in the toolbox image and waits until it is
   * Running (`until: 'running'`) or has ended; returns its phase and its log.
   */
  async function runPod(name: string, command: string[], until: 'running' | 'ended'): Promise<{ phase: string; log: string }> {
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: 'default' },
      spec: { restartPolicy: 'Never', containers: [{ name, image: IMAGE, imagePullPolicy: 'IfNotPresent', command }] },
    }
    const created = await kubectl(['create', '-f', '-'], JSON.stringify(pod))
    expect(created.stderr).toBe('')
    const wanted = until === 'running' ? ['Running', 'Succeeded', 'Failed'] : ['Succeeded', 'Failed']
    let phase = ''
    await eventually(
      `pod ${name} ${until}`,
      async () => {
        phase = (await kubectl(['get', `pod/${name}`, '-o', 'jsonpath={.status.phase}'])).stdout.trim()
        return wanted.includes(phase)
      },
      120_000,
    )
    const log = (await kubectl(['logs', `pod/${name}`])).stdout
    await kubectl(['delete', `pod/${name}`, '--wait=false'])
    return { phase, log }
  }

  /**
   * A pod's curl of the local registry's /v2/ by its Service name: the HTTP
   * status it got, or curl's error. Pods resolve names through CoreDNS, which
   * may still be starting when dev-up returns (dev-up waits for the nodes only).
   */
  async function registryStatus(name: string): Promise<string> {
    const rollout = await kubectl(['rollout', 'status', 'deployment/coredns', '-n', 'kube-system', '--timeout=120s'])
    expect(rollout.exitCode).toBe(0)
    const url = `http://${registry.name}.devreg.svc.cluster.local:5000/v2/`
    return (await runPod(name, ['curl', '-sS', '--max-time', '30', '-o', '/dev/null', '-w', '%{http_code}', url], 'ended')).log.trim()
  }

  test('the kubelet pulls a docker.io/library image through the cache, which fetches each blob from the hub once', async () => {
    const blobs = await manifestBlobs(upstream.port, 'library/toolbox', '1')
    expect((await runPod('sleeper', ['sleep', '3600'], 'running')).phase).toBe('Running')
    const node = await w.addressOn(w.node)
    const logs = await q()`docker logs ${cache.name}`
    const nodePulls = `${logs.stdout}\n${logs.stderr}`
      .split('\n')
      .filter((l) => l.includes('/v2/library/toolbox/manifests/1') && new RegExp(`http\\.request\\.remoteaddr="?${node}:`).test(l))
    expect(nodePulls.length).toBeGreaterThan(0)
    expect(await blobGets(upstream.name, 'library/toolbox')).toEqual(Object.fromEntries(blobs.map((d) => [d, 1])))
  })

  test('dev-down then dev-up: the new cluster starts the same pod with zero blob bytes from the hub', async () => {
    // The cache holds the image whether or not the test above ran: pulled through it from the host.
    expect((await pull(`127.0.0.1:${cache.port}/library/toolbox:1`)).ok).toBe(true)
    await waitStored(cache.name, await manifestBlobs(upstream.port, 'library/toolbox', '1'))
    const before = await blobGets(upstream.name, 'library/toolbox')
    expect((await w.devDown()).code).toBe(0)
    const up = await w.devUp()
    if (up.code !== 0) console.error(up.stderr)
    expect(up.code).toBe(0)
    expect((await runPod('sleeper-again', ['sleep', '3600'], 'running')).phase).toBe('Running')
    expect(await blobGets(upstream.name, 'library/toolbox')).toEqual(before)
  })

  test('a pod reaches the local registry by its Service name: CoreDNS, kube-proxy and the EndpointSlice lead to it', async () => {
    expect(await registryStatus('curl-registry')).toBe('200')
  })

  test('after the local registry is recreated at another address, dev-up leads the pods to it again', async () => {
    const before = await w.addressOn(registry.name)
    await q()`docker rm -f ${registry.name}`
    // Another container takes the freed address, so the registry cannot get it back; it serves
    // nothing, so pods still led to the old address would get no answer.
    await q()`docker run -d --name ${fx.name('squatter')} --network ${network} ${TOOLBOX_IMAGE} sleep 3600`
    const up = await w.devUp()
    if (up.code !== 0) console.error(up.stderr)
    expect(up.code).toBe(0)
    expect(await w.addressOn(registry.name)).not.toBe(before)
    expect(await registryStatus('curl-registry-moved')).toBe('200')
  })
})
