// The images Kubernetes manifests refer to, for `warm -f`: every `image` in a
// `containers`, `initContainers` or `ephemeralContainers` list anywhere in a
// document. Walking for the lists rather than knowing each kind's path covers
// Pods, every workload's template (Deployment, StatefulSet, DaemonSet,
// ReplicaSet, Job), a CronJob's jobTemplate, `kind: List` and kinds devreg has
// never heard of (Argo Rollouts, Knative Services, operators' CRDs).
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { EXIT, UserError } from '../core/log.ts'
import { parseReference } from '../core/reference.ts'

const CONTAINER_LISTS = new Set(['containers', 'initContainers', 'ephemeralContainers'])

/** Every container image in a parsed document, in document order, repeats kept (pure). */
export function imagesInObject(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) for (const v of value) imagesInObject(v, out)
  else if (value !== null && typeof value === 'object')
    for (const [key, v] of Object.entries(value)) {
      if (CONTAINER_LISTS.has(key) && Array.isArray(v))
        for (const c of v) {
          const image = (c as { image?: unknown } | null)?.image
          if (typeof image === 'string' && image.trim()) out.push(image.trim())
        }
      imagesInObject(v, out)
    }
  return out
}

/** The images of every document in a YAML stream; a syntax error names the source, line and column (exit 2). */
export function imagesInYaml(text: string, source: string): string[] {
  const out: string[] = []
  for (const doc of parseAllDocuments(text)) {
    const err = doc.errors[0]
    if (err) {
      const pos = err.linePos?.[0]
      throw new UserError(`${source}${pos ? `:${pos.line}:${pos.col}` : ''}: YAML syntax error: ${err.message.split('\n')[0]}`, EXIT.usage)
    }
    imagesInObject(doc.toJS({ maxAliasCount: 1000 }), out)
  }
  return out
}

/** A YAML file, or every *.yaml and *.yml under a directory (recursively, hidden ones left out), sorted. */
export function manifestFiles(path: string): string[] {
  let stat: ReturnType<typeof statSync>
  try {
    stat = statSync(path)
  } catch {
    throw new UserError(`${path}: no such file or directory`, EXIT.usage)
  }
  if (!stat.isDirectory()) return [path]
  const out: string[] = []
  for (const entry of readdirSync(path, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (entry.name.startsWith('.')) continue
    const full = join(path, entry.name)
    if (entry.isDirectory()) out.push(...manifestFiles(full))
    else if (/\.ya?ml$/.test(entry.name)) out.push(full)
  }
  return out
}

/** The same image however it is spelled: nginx, docker.io/library/nginx:latest. */
const canonical = (image: string) => {
  const r = parseReference(image)
  return `${r.domain}/${r.repository}@${r.reference}`
}

/** Each image once (first spelling kept). */
export function uniqueImages(images: Iterable<string>): string[] {
  const seen = new Map<string, string>()
  for (const image of images) if (!seen.has(canonical(image))) seen.set(canonical(image), image)
  return [...seen.values()]
}

/** `warm -f PATH`: the images of a file, a directory of manifests, or `-` (stdin), each once. */
export async function imagesInManifests(
  path: string,
  stdin: AsyncIterable<Buffer | string> | Iterable<Buffer | string> = process.stdin,
): Promise<string[]> {
  if (path === '-') {
    let text = ''
    for await (const chunk of stdin) text += chunk.toString()
    return uniqueImages(imagesInYaml(text, 'stdin'))
  }
  return uniqueImages(manifestFiles(path).flatMap((file) => imagesInYaml(readFileSync(file, 'utf8'), file)))
}
