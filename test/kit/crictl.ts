// Builds the test nodes' crictl (test/images/kind-node/crictl.ts) into one
// executable with `bun build --compile`, for the rig's kind node image and the
// k3d stand-in's node image.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { $ } from 'zx'

export const CRICTL_SOURCE = fileURLToPath(new URL('../images/kind-node/crictl.ts', import.meta.url))

/** A digest of what the executable is built from: the source and the bun that compiles it. */
export function crictlDigest(): string {
  return createHash('sha256')
    .update(readFileSync(CRICTL_SOURCE))
    .update(process.versions.bun ?? '')
    .digest('hex')
    .slice(0, 12)
}

/** Compiles crictl to `outfile` (grpc-js bundled in; the node needs no bun). */
export async function compileCrictl(outfile: string): Promise<void> {
  const r = await $({ quiet: true, nothrow: true })`${process.execPath} build --compile --outfile ${outfile} ${CRICTL_SOURCE}`
  if (r.exitCode !== 0) throw new Error(`bun build --compile ${CRICTL_SOURCE}: ${r.stderr.trim()}`)
}
