// Where warm's images come from: the command line, the config's `images`,
// Kubernetes manifests (-f) or the running cluster's nodes (--from-cluster);
// and where --save writes them. Images named on the command line must each
// have a cache (exit 2 otherwise, as before); images found in manifests or on
// nodes that no cache serves (the local registry's, a registry without a mirror)
// are left out with a note, since nobody chose them one by one.
import { existsSync, readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { isMap, parseDocument } from 'yaml'
import { configuredCluster } from '../cluster/providers/index.ts'
import { PROBE_REPOSITORY } from '../cluster/verify.ts'
import { type Config, LOCAL_CONFIG } from '../core/config.ts'
import { configSchema } from '../core/config-schema.ts'
import { listContainers } from '../core/docker.ts'
import type { Runner } from '../core/exec.ts'
import { EXIT, log, UserError } from '../core/log.ts'
import { parseReference } from '../core/reference.ts'
import { imagesInManifests, uniqueImages } from './manifest-images.ts'
import { routeImages, type WarmTarget } from './warm.ts'

export interface WarmSources {
  /** Named on the command line. */
  images: readonly string[]
  /** -f PATH: a manifest file, a directory of them, or - for stdin. */
  manifests: string | null
  fromCluster: boolean
  save: boolean
  /** --config: also where --save writes. */
  configPath?: string
}

const imageRef = configSchema.shape.images.unwrap().element

/** Found images split into those a cache serves and those left out, with why (pure). */
export function splitRoutable(
  config: Config,
  images: readonly string[],
): { routable: string[]; skipped: { image: string; reason: string }[] } {
  const routable: string[] = []
  const skipped: { image: string; reason: string }[] = []
  for (const image of images) {
    if (!imageRef.safeParse(image).success) skipped.push({ image, reason: 'not an image reference devreg accepts' })
    else {
      const { domain } = parseReference(image)
      if (config.registries.some((r) => r.role === 'cache' && r.upstreamDomain === domain)) routable.push(image)
      else skipped.push({ image, reason: `no cache for ${domain}` })
    }
  }
  return { routable, skipped }
}

/**
 * The image references `ctr images list` shows (pure): each tag, and a digest
 * reference only when no tag names the same image (a pod that pulled by
 * digest); image IDs (bare sha256:...) and verify's probe image are left out.
 */
export function nodeImageRefs(ctrOutput: string): string[] {
  const rows = ctrOutput
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter(([ref, , digest]) => ref && !ref.startsWith('sha256:') && digest?.startsWith('sha256:'))
    .filter(([ref]) => !ref.includes(`/${PROBE_REPOSITORY}@`))
  const tagged = new Set(rows.filter(([ref]) => !ref.includes('@')).map(([ref, , digest]) => `${ref.replace(/:[^:/]+$/, '')}@${digest}`))
  return [...new Set(rows.filter(([ref]) => !ref.includes('@') || !tagged.has(ref)).map(([ref]) => ref))].sort()
}

/** Every image the cluster's running nodes hold (containerd's k8s.io namespace). */
export async function clusterImages(run: Runner, config: Config): Promise<string[]> {
  const { provider, name } = config.cluster
  const cluster = configuredCluster(config, await listContainers(run))
  const nodes = cluster?.nodes.filter((n) => n.running) ?? []
  if (!nodes.length) throw new UserError(`no running ${provider} cluster named ${name}: start it (dev-up), or warm without --from-cluster`)
  const refs: string[] = []
  for (const node of nodes) {
    const r = await run.probe(['docker', 'exec', node.name, 'ctr', '--namespace', 'k8s.io', 'images', 'list'])
    if (!r.ok) log.warn(`cannot list the images of node ${node.name}: ${r.stderr.trim().split('\n')[0]}`)
    else refs.push(...nodeImageRefs(r.stdout))
  }
  return uniqueImages(refs)
}

/** Where --save writes: the file --config or DEVREG_CONFIG names (the one the next run reads), else config/devreg.local.yaml. */
export function saveTarget(configPath: string | undefined, env: Readonly<Record<string, string | undefined>>): string {
  const chosen = configPath ?? env.DEVREG_CONFIG
  return chosen ? resolve(chosen) : LOCAL_CONFIG
}

/** The config file's text with `images` set to the list; comments, key order and every other key kept (pure). */
export function withImages(text: string | null, images: readonly string[], file: string): string {
  const doc = parseDocument(text ?? '')
  if (doc.errors.length)
    throw new UserError(`${file}: YAML syntax error: ${doc.errors[0].message.split('\n')[0]}: fix it before --save`, EXIT.usage)
  if (doc.contents === null) doc.contents = doc.createNode({}) as unknown as typeof doc.contents
  if (!isMap(doc.contents)) throw new UserError(`${file}: must be a YAML mapping of keys before --save can add images`, EXIT.usage)
  doc.set('images', doc.createNode([...images]))
  const out = doc.toString()
  return text === null ? `# Local overrides of config/devreg.yaml (git-ignored). images: written by warm --save.\n${out}` : out
}

export async function saveImages(run: Runner, images: readonly string[], file: string): Promise<void> {
  const text = existsSync(file) ? readFileSync(file, 'utf8') : null
  await run.writeFile(file, withImages(text, images, file))
  log.ok(`saved ${images.length} image${images.length === 1 ? '' : 's'} as images in ${file}`)
}

/** The images to warm, routed to their caches; with --save, written to the config first. */
export async function warmTargets(run: Runner, config: Config, sources: WarmSources): Promise<WarmTarget[]> {
  if (!sources.images.length && !sources.manifests && !sources.fromCluster) {
    if (sources.save)
      throw new UserError('--save writes the images named, found with -f, or on the cluster with --from-cluster: give one', EXIT.usage)
    if (!config.images.length)
      throw new UserError(
        'nothing to warm: name images (dev-registry warm redis:7-alpine) or list them under images in the config',
        EXIT.usage,
      )
    return routeImages(config, config.images)
  }
  const named = routeImages(config, sources.images)
  const found: string[] = []
  if (sources.manifests) found.push(...(await imagesInManifests(sources.manifests)))
  if (sources.fromCluster) found.push(...(await clusterImages(run, config)))
  const { routable, skipped } = splitRoutable(config, uniqueImages(found))
  for (const s of skipped) log.info(`left out ${s.image}: ${s.reason}`)
  const all = uniqueImages([...named.map((t) => t.image), ...routable])
  if (!all.length) throw new UserError('nothing to warm: no image found that a cache serves', EXIT.usage)
  if (sources.save) await saveImages(run, all, saveTarget(sources.configPath, run.env))
  return routeImages(config, all)
}
