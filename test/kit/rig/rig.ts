// The test rig: `bun test/kit/rig/rig.ts up` starts the private engine (clearing
// what earlier runs left in it when it was not running), builds the kind node images
// and what the real k3d CLI runs, and prints the environment the e2e tests run with
// as JSON; `down` stops the engine.

import { ENGINE, pruneEngine, startEngine, stopEngine } from './engine.ts'
import { goProgram } from './go-programs.ts'
import { k3dEnv } from './k3d-images.ts'
import { CONTAINERD_LINES, nodeImage } from './node-image.ts'

export interface RigEnv {
  /** Run the e2e tests inside this network namespace: the engine's ports are on its loopback. */
  netnsPath: string
  env: Record<string, string>
  started: boolean
}

export async function rigUp(): Promise<RigEnv> {
  const { path, started } = await startEngine()
  // Only an engine this run started has no other user whose objects a prune would take.
  if (started) await pruneEngine()
  const images: string[] = []
  for (const line of CONTAINERD_LINES) images.push(`${line}=${await nodeImage(line)}`)
  const k3d = await k3dEnv(path)
  return {
    netnsPath: ENGINE.netnsPath,
    started,
    // The real kubectl first on PATH: built from the nodes' Kubernetes, v1.36 as Debian sid's kubernetes-client.
    env: { DOCKER_HOST: ENGINE.host, DEVREG_RIG_NODE_IMAGES: images.join(','), ...k3d, PATH: `${await goProgram('kubectl')}:${k3d.PATH}` },
  }
}

if (import.meta.main) {
  const [command] = process.argv.slice(2)
  if (command === 'up') console.log(JSON.stringify(await rigUp(), null, 2))
  else if (command === 'down') await stopEngine()
  else {
    console.error('usage: bun test/kit/rig/rig.ts up|down')
    process.exitCode = 2
  }
}
