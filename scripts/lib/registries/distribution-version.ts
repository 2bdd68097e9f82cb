// Which distribution a registry runs, as `registry --version` says it
// (`registry github.com/distribution/distribution/v3 v3.0.0`, Debian's build
// `... 2.8.2+ds1`): 2.x and 3 differ in what a cache logs and in how often it
// fetches a blob it missed. The one place devreg asks.
import type { Registry } from '../core/config.ts'
import type { Runner } from '../core/exec.ts'

/**
 * The version, e.g. 2.8.2+ds1 or v3.0.0: asked of the registry's running
 * container (`container`: what serves now), or of a throwaway container of its
 * image (`image`: works with the registry stopped). Null when it cannot be told.
 */
export async function distributionVersion(
  run: Runner,
  registry: Pick<Registry, 'name' | 'image'>,
  from: 'container' | 'image',
): Promise<string | null> {
  const argv =
    from === 'container'
      ? ['docker', 'exec', registry.name, 'registry', '--version']
      : ['docker', 'run', '--rm', '--network', 'none', '--entrypoint', 'registry', registry.image, '--version']
  const r = await run.probe(argv)
  return r.ok ? (r.stdout.trim().split(/\s+/).at(-1) ?? null) : null
}

/** distribution 2.x: its cache fetches a missed blob twice (once to answer, once to store) and logs each store. */
export const isDistribution2 = (version: string | null) => version !== null && /^v?2\./.test(version)
