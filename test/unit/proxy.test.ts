// Behind a proxy: which NO_PROXY nodes get, and that devreg's own requests stay off the proxy.
import { expect, test } from 'bun:test'
import { resolveConfig } from '../../scripts/lib/core/config.ts'
import { bypassProxyForThisMachine, nodeNoProxy } from '../../scripts/lib/machine/proxy.ts'

const config = resolveConfig({ mirrors: [{ host: 'docker.io' }, { host: 'ghcr.io' }] })

test('without a proxy nodes get no NO_PROXY from devreg', () => {
  expect(nodeNoProxy(config, { NO_PROXY: 'corp.example' })).toEqual({})
})

test("with a proxy, every registry's container name follows the user's NO_PROXY, in both spellings", () => {
  const env = nodeNoProxy(config, { https_proxy: 'http://proxy:3128', no_proxy: 'corp.example, .internal' })
  expect(env.NO_PROXY).toBe('corp.example,.internal,kind-registry,kind-cache-docker-io,kind-cache-ghcr-io')
  expect(env.no_proxy).toBe(env.NO_PROXY)
})

test("this machine's addresses (loopback and k3d's 0.0.0.0) are added to NO_PROXY only when a proxy is set, once", () => {
  const plain: Record<string, string> = {}
  bypassProxyForThisMachine(plain)
  expect(plain).toEqual({})
  const env: Record<string, string> = { HTTP_PROXY: 'http://proxy:3128', NO_PROXY: 'localhost,corp.example' }
  bypassProxyForThisMachine(env)
  bypassProxyForThisMachine(env)
  expect(env.NO_PROXY).toBe('localhost,corp.example,127.0.0.1,::1,0.0.0.0')
})
