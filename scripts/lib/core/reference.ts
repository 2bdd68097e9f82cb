// Image references: the one grammar devreg validates them by, and how docker
// and containerd normalize them.

/** One DNS label, lowercase: a part of a registry domain (and a container name). */
export const DNS_LABEL = '[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?'

// distribution's reference grammar (distribution/reference/regexp.go).
/** One part of a repository name: lowercase alphanumerics joined by . _ __ or dashes. */
export const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*'
/** A repository name within a registry: acme/app, library/redis. */
export const REPOSITORY = `${PATH_COMPONENT}(?:/${PATH_COMPONENT})*`
export const TAG = '[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}'
/** A registry domain as a reference starts with it, port included: docker.io, my.registry:5000. */
const DOMAIN = `${DNS_LABEL}(?:\\.${DNS_LABEL})*(?::[0-9]{1,5})?`

/** An image reference: [domain[:port]/]repository[:tag][@sha256:digest], e.g. registry:2 or kindest/node:v1.31.0. */
export const IMAGE_REFERENCE = new RegExp(`^(?:${DOMAIN}/)?${REPOSITORY}(?::${TAG})?(?:@sha256:[a-f0-9]{64})?$`)

export const isImageReference = (text: string): boolean => IMAGE_REFERENCE.test(text)

/** An image reference in the form nodes pull it: docker.io/library/redis:7-alpine. */
export interface ImageReference {
  /** The registry part, port included (distribution's reference grammar calls it the domain), as containerd names it: docker.io, ghcr.io, localhost:5001. */
  domain: string
  repository: string
  /** The tag, or the digest when the reference names one. */
  reference: string
}

/**
 * Normalizes a reference the way docker and containerd do: no registry domain
 * means docker.io, and a one-part docker.io name lives under library/.
 */
export function parseReference(ref: string): ImageReference {
  const at = ref.indexOf('@')
  const nameTag = at >= 0 ? ref.slice(0, at) : ref
  const digest = at >= 0 ? ref.slice(at + 1) : null
  const slash = nameTag.indexOf('/')
  const first = slash >= 0 ? nameTag.slice(0, slash) : ''
  const hasDomain = slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost')
  let domain = hasDomain ? first : 'docker.io'
  let rest = hasDomain ? nameTag.slice(slash + 1) : nameTag
  if (domain === 'index.docker.io' || domain === 'registry-1.docker.io') domain = 'docker.io'
  const colon = rest.lastIndexOf(':')
  const tag = colon >= 0 ? rest.slice(colon + 1) : 'latest'
  if (colon >= 0) rest = rest.slice(0, colon)
  if (domain === 'docker.io' && !rest.includes('/')) rest = `library/${rest}`
  return { domain, repository: rest, reference: digest ?? tag }
}
