// Every address a registry has comes from one place (config.ts registryAddress),
// so an IPv6 or non-default loopback bind reads the same in every file devreg writes.
import { expect, test } from 'bun:test'
import { parse as parseYaml } from 'yaml'
import { registryHosting } from '../../scripts/lib/cluster/in-cluster.ts'
import { kindHostsTomls } from '../../scripts/lib/cluster/providers/kind.ts'
import { registryAddress, resolveConfig } from '../../scripts/lib/core/config.ts'
import { registryContainer } from '../../scripts/lib/registries/registry-containers.ts'

test.each([
  ['127.0.0.1', 'localhost:5001', 'http://127.0.0.1:5001', '127.0.0.1:5001:5000'],
  ['127.0.0.2', '127.0.0.2:5001', 'http://127.0.0.2:5001', '127.0.0.2:5001:5000'],
  ['::1', '[::1]:5001', 'http://[::1]:5001', '[::1]:5001:5000'],
])('bind %s: on the host %s, url %s, publish %s', (bind, onHost, url, publish) => {
  expect(registryAddress('kind-registry', bind, 5001)).toEqual({
    onHost,
    url,
    publish,
    inNetwork: 'kind-registry:5000',
    inNetworkUrl: 'http://kind-registry:5000',
  })
})

test.each([
  ['::1', '[::1]:5001'],
  ['127.0.0.2', '127.0.0.2:5001'],
])('bind %s reaches --publish, the certs.d directory and the ConfigMap as %s', (bind, onHost) => {
  const config = resolveConfig({ registry: { bind }, mirrors: [{ host: 'docker.io' }] })
  const [local, cache] = config.registries
  expect(registryContainer(local).args).toContain(`${onHost}:5000`)
  expect(registryContainer(cache).args).toContain(`${onHost.replace(':5001', ':5101')}:5000`)
  expect([...kindHostsTomls(config).keys()]).toContain(`/etc/containerd/certs.d/${onHost}`)
  const hosting = parseYaml(parseYaml(registryHosting(config)).data['localRegistryHosting.v1'])
  expect(hosting.host).toBe(onHost)
})
