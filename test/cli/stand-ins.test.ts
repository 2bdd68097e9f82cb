// The kubectl stand-in must refuse what the real tool would reject, so no
// test passes on a call kubectl would not accept. (kind and k3d are real in
// the tests: see test/e2e and test/kit/rig.)
import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { $ } from 'zx'
import { ROOT } from '../kit/scripts.ts'

const run = async (tool: string, args: string[], input = '') => {
  const p = await $({
    quiet: true,
    nothrow: true,
    input: input || undefined,
    env: { ...process.env, DOCKER_HOST: 'unix:///nonexistent.sock' },
  })`${join(ROOT, 'test/stand-ins/bin', tool)} ${args}`
  return { code: p.exitCode, stderr: p.stderr }
}

/** A row for a manifest `kubectl apply -f -` refuses with message. */
const apply = (message: string, manifest: string) => ['kubectl', ['--context', 'kind-x', 'apply', '-f', '-'], message, manifest]

describe('the kubectl stand-in refuses', () => {
  test.each([
    ['kubectl', ['apply', '-f', '-'], 'needs --context', ''],
    ['kubectl', ['--context', 'kind-x', 'edit', 'ns', 'x'], 'unknown command "edit"', ''],
    ['kubectl', ['--context', 'kind-x', 'delete', 'deployment', 'x'], 'implements only: delete namespace', ''],
    ['kubectl', ['--context', 'kind-x', 'get', 'endpointslice', 'x', '-n', 'devreg', '-o', 'wide'], '-o json or -o yaml', ''],
    apply('not apps/v1 Deployment', 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n'),
    apply(
      'Service.spec: unknown field "selector"',
      'apiVersion: v1\nkind: Service\nmetadata: {name: x, namespace: devreg}\nspec: {selector: {app: x}, ports: [{port: 5000}]}\n',
    ),
    apply(
      'must be a valid IPv4 address',
      'apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: x, namespace: devreg}\naddressType: IPv4\nendpoints: [{addresses: [kind-registry]}]\n',
    ),
    apply(
      'endpoints[0]: unknown field "address"',
      'apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: x, namespace: devreg}\naddressType: IPv4\nendpoints: [{address: 10.0.0.1}]\n',
    ),
  ] as [string, string[], string, string][])('%s %p', async (tool, args, message, input) => {
    const r = await run(tool, args, input)
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(message)
  })
})
