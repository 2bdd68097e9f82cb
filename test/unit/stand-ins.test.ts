// The stand-ins must refuse what the real tools would reject, so no test
// passes on a call kind, k3d or kubectl would not accept.
import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { $ } from 'zx'
import { ROOT } from '../support/fixture.ts'

const run = async (tool: string, args: string[], input = '') => {
  const p = await $({
    quiet: true,
    nothrow: true,
    input: input || undefined,
    env: { ...process.env, DOCKER_HOST: 'unix:///nonexistent.sock' },
  })`${join(ROOT, 'test/stand-ins/bin', tool)} ${args}`
  return { code: p.exitCode, stderr: p.stderr }
}

describe('stand-ins refuse', () => {
  test.each([
    ['kind', ['create', 'cluster', '--registry', 'x'], 'unknown flag: --registry', ''],
    ['kind', ['get', 'pods'], 'unknown command "get pods"', ''],
    [
      'kind',
      ['create', 'cluster', '--config', '-'],
      'unknown field "containerd"',
      'kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\ncontainerd: {}\n',
    ],
    [
      'kind',
      ['create', 'cluster', '--config', '-'],
      'apiVersion: kind.x-k8s.io/v1alpha4',
      'kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha3\n',
    ],
    [
      'kind',
      ['create', 'cluster', '--config', '-'],
      'nodes[0]: unknown field "imag"',
      'kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes: [{role: control-plane, imag: x}]\n',
    ],
    [
      'kind',
      ['create', 'cluster', '--config', '-'],
      'unknown role "master"',
      'kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes: [{role: master}]\n',
    ],
    ['k3d', ['cluster', 'create', 'x', '--registry-use', 'kind-registry'], 'unknown flag: --registry-use', ''],
    ['k3d', ['get', 'clusters'], 'unknown command "get clusters"', ''],
    ['kubectl', ['apply', '-f', '-'], 'needs --context', ''],
    ['kubectl', ['--context', 'kind-x', 'delete', 'ns', 'x'], 'unknown command "delete"', ''],
  ] as [string, string[], string, string][])('%s %p', async (tool, args, message, input) => {
    const r = await run(tool, args, input)
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(message)
  })
})
