// What the e2e tests read from a cluster's API server, through the real
// kubectl on the rig's PATH, with the test's kubeconfig: objects as data, and
// the watch events of one object while something else runs.
import { spawn } from 'node:child_process'
import { $ } from 'zx'
import { eventually } from './registry.ts'

interface Port {
  name?: string
  port?: number
  targetPort?: number | string
  protocol?: string
}

/** The fields of the objects devreg applies (ConfigMap, Service, EndpointSlice) that the tests read. */
export interface KubeObject {
  metadata: { name: string; resourceVersion: string; labels?: Record<string, string> }
  data?: Record<string, string>
  spec?: { clusterIP?: string; ports?: Port[] }
  endpoints?: { addresses: string[]; conditions?: Record<string, boolean> }[]
  ports?: Port[]
}

export interface Kube {
  /** `kubectl get KIND NAME [-n NS] -o json`, parsed; null when the server says NotFound. */
  get(...args: string[]): Promise<KubeObject | null>
  /**
   * The types of the watch events (ADDED, MODIFIED, DELETED) of one object
   * while `during` runs; the watch is open before `during` starts.
   */
  watchDuring(args: string[], during: () => Promise<unknown>): Promise<string[]>
}

/** kubectl against the context kind (kind-NAME) or k3d (k3d-NAME) wrote into the kubeconfig in `env`. */
export function kube(env: Record<string, string>, context: () => string): Kube {
  const fullEnv = () => ({ ...process.env, ...env })
  return {
    async get(...args) {
      const r = await $({ quiet: true, nothrow: true, env: fullEnv() })`kubectl --context ${context()} get ${args} -o json`
      if (r.exitCode === 0) return JSON.parse(r.stdout)
      if (r.stderr.includes('(NotFound)')) return null
      throw new Error(`kubectl get ${args.join(' ')}: ${r.stderr.trim()}`)
    },
    async watchDuring(args, during) {
      const watch = spawn(
        'kubectl',
        ['--context', context(), 'get', ...args, '--watch', '--output-watch-events', '-o', 'jsonpath={.type}{"\\n"}'],
        { env: fullEnv(), stdio: ['ignore', 'pipe', 'ignore'] },
      )
      let events = ''
      watch.stdout.on('data', (chunk) => {
        events += chunk
      })
      try {
        // The first event is the object as it is (ADDED): from then on nothing is missed.
        await eventually(`a watch on ${args.join(' ')}`, async () => events.length > 0, 20_000)
        await during()
      } finally {
        watch.kill()
      }
      return events.trim().split('\n')
    },
  }
}
