// What a config file may say: every key with its type, pattern and default,
// and zod's complaints as one line per key path with a fix. config.ts merges
// the files, validates them against this and derives every name.
import { z } from 'zod'
import { type DurationUnit, GO_UNITS, parseDuration } from './duration.ts'
import { PROVIDER_NAMES } from './naming.ts'
import { IMAGE_REFERENCE, DNS_LABEL as label, PATH_COMPONENT } from './reference.ts'

// Names that reach a shell, a TOML or a YAML file are held to strict patterns.
const HOSTNAME = new RegExp(`^(?=.{1,253}(:|$))${label}(\\.${label})*$`)
const REGISTRY_DOMAIN = new RegExp(`^(?=.{1,253}(:|$))${label}(\\.${label})*(:[0-9]{1,5})?$`)
const CONTAINER_NAME = new RegExp(`^${label}$`)
const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/
const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/
const ALIAS = new RegExp(`^${label}(\\.${label})*(:[0-9]{1,5})?(/${PATH_COMPONENT})*$`)
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/
const IPV4 = /^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/
const IPV6 = /^[0-9a-fA-F:]{2,39}$/
const PLATFORM = /^[a-z0-9]+\/[a-z0-9]+(\/[a-z0-9]+)?$/

/** Hosts that an /etc/hosts or `hosts` entry must never shadow. */
export const PUBLIC_REGISTRIES = [
  'docker.io',
  'registry-1.docker.io',
  'index.docker.io',
  'ghcr.io',
  'quay.io',
  'registry.k8s.io',
  'gcr.io',
  'k8s.gcr.io',
]

const pattern = (re: RegExp, what: string) =>
  z.string({ error: `must be a string (${what})` }).regex(re, { error: (iss) => `${JSON.stringify(iss.input)} is not ${what}` })
const duration = (units: readonly DurationUnit[], what: string) =>
  z
    .string({ error: `must be a string (${what})` })
    .refine((text) => parseDuration(text, units) !== null, { error: (iss) => `${JSON.stringify(iss.input)} is not ${what}` })

const hostname = pattern(HOSTNAME, 'a valid hostname (lowercase letters, digits, dots and dashes)')
const registryDomain = pattern(REGISTRY_DOMAIN, 'a registry domain such as docker.io or my.registry:5000')
const containerName = pattern(
  CONTAINER_NAME,
  'a valid container name (lowercase letters, digits and dashes; no dots, which could leak to public DNS)',
)
const volumeName = pattern(VOLUME_NAME, 'a valid volume name (letters, digits, _ . -)')
const imageRef = pattern(IMAGE_REFERENCE, 'an image reference such as registry:2 or kindest/node:v1.31.0')
const port = z
  .number({ error: 'must be a port number (an integer from 1 to 65535)' })
  .int({ error: 'must be a port number (an integer from 1 to 65535)' })
  .min(1, { error: (iss) => `${iss.input} is not a port: use an integer from 1 to 65535` })
  .max(65535, { error: (iss) => `${iss.input} is not a port: use an integer from 1 to 65535` })
const httpUrl = z.string({ error: 'must be an http(s) URL string' }).superRefine((value, ctx) => {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(value)} is not a URL: use https://host[:port]` })
    return
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(value)} is not an http(s) URL: use https://host[:port]` })
  else if (url.username || url.password)
    ctx.addIssue({
      code: 'custom',
      message: 'must not contain credentials: name environment variables under credentials instead',
    })
  else if (!REGISTRY_DOMAIN.test(url.host))
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(url.host)} is not a valid registry domain` })
  else if (url.pathname !== '/' || url.search || url.hash)
    ctx.addIssue({
      code: 'custom',
      message: 'must be the registry root (no path): a path-prefixed mirror goes in remotes with a path',
    })
})
const address = z.string({ error: 'must be an IP address string' }).refine((v) => IPV4.test(v) || (v.includes(':') && IPV6.test(v)), {
  error: (iss) => `${JSON.stringify(iss.input)} is not an IP address`,
})

const mirrorSchema = z.strictObject({
  // The key is `host` as users write it; its value is a registry domain.
  host: registryDomain,
  upstream: httpUrl.nullable().default(null),
  name: containerName.nullable().default(null),
  port: port.nullable().default(null),
  image: imageRef.nullable().default(null),
  volume: volumeName.nullable().default(null),
  // null: the user's docker login for the upstream, if any (lib/registries/login.ts); none: anonymous.
  credentials: z
    .union(
      [
        z.literal('none'),
        z.strictObject({
          usernameEnv: pattern(ENV_NAME, 'an environment variable name'),
          passwordEnv: pattern(ENV_NAME, 'an environment variable name'),
        }),
      ],
      { error: 'must be none, or {usernameEnv, passwordEnv} naming environment variables' },
    )
    .nullable()
    .default(null),
  remotes: z
    .array(
      z.strictObject({
        url: httpUrl,
        path: z
          .string()
          .regex(/^\/[A-Za-z0-9._~/-]*$/, { error: 'must be a URL path starting with / (letters, digits, . _ ~ - /)' })
          .nullable()
          .default(null),
      }),
    )
    .default([]),
})

const DEFAULT_MIRRORS = [
  { host: 'docker.io', upstream: 'https://registry-1.docker.io' },
  { host: 'ghcr.io', upstream: 'https://ghcr.io' },
  { host: 'quay.io', upstream: 'https://quay.io' },
  { host: 'registry.k8s.io', upstream: 'https://registry.k8s.io' },
]

export const configSchema = z.strictObject({
  cluster: z
    .strictObject({
      provider: z
        .enum(PROVIDER_NAMES, { error: (iss) => `${JSON.stringify(iss.input)} is not a provider: use ${PROVIDER_NAMES.join(' or ')}` })
        .default('kind'),
      name: containerName.default('dev'),
      workers: z.number().int().min(0).max(20, { error: 'must be a whole number from 0 to 20' }).default(0),
      nodeImage: imageRef.nullable().default(null),
      network: pattern(NETWORK_NAME, 'a valid network name').nullable().default(null),
      // Handed to kubectl wait --timeout, which reads it with Go's time.ParseDuration: Go's units only.
      waitTimeout: duration(GO_UNITS, 'a duration such as 300s, 5m or 1h').default('300s'),
    })
    .prefault({}),
  registry: z
    .strictObject({
      name: containerName.default('kind-registry'),
      bind: address
        .refine((v) => v !== '0.0.0.0' && v !== '::', {
          error: 'must not be 0.0.0.0 or :: (anyone on your network could push): use 127.0.0.1',
        })
        .default('127.0.0.1'),
      port: port.default(5001),
      image: imageRef.default('registry:3'),
      volume: volumeName.default('kind-registry-data'),
    })
    .prefault({}),
  mirrors: z.array(mirrorSchema).default(() => DEFAULT_MIRRORS.map((m) => mirrorSchema.parse(m))),
  aliases: z.array(pattern(ALIAS, 'a registry domain or domain/namespace such as docker.io/acme')).default([]),
  hosts: z
    .array(
      z.strictObject({
        name: hostname.refine((v) => !PUBLIC_REGISTRIES.includes(v), {
          error: (iss) => `${iss.input} is a public registry: an entry for it would shadow that registry; remove it`,
        }),
        address,
        buildAddress: z
          .union([address, z.literal('host-gateway')], { error: 'must be an IP address or host-gateway' })
          .default('host-gateway'),
      }),
    )
    .default([]),
  images: z.array(imageRef).default([]),
  warm: z
    .strictObject({
      platforms: z.array(pattern(PLATFORM, 'a platform such as linux/amd64 or linux/arm64/v8')).default([]),
      concurrency: z.number().int().min(1).max(64, { error: 'must be a whole number from 1 to 64' }).default(4),
    })
    .prefault({}),
  preflight: z.strictObject({ image: imageRef.nullable().default(null) }).prefault({}),
})

export type ConfigFile = z.infer<typeof configSchema>
export type MirrorCredentials = ConfigFile['mirrors'][number]['credentials']

/** What is wrong at a key path of the config. */
export type Issue = { path: (string | number)[]; message: string }

/** A zod issue as the lines configError prints: each with its key path and a fix. */
export function describeIssue(issue: z.core.$ZodIssue): Issue[] {
  const path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p)) as (string | number)[]
  if (issue.code === 'invalid_union') {
    // The branch that got past the value's type (a mapping missing a key) says more than the union's own message.
    const deeper = issue.errors.find((branch) => branch.some((i) => i.path.length > 0))
    return deeper
      ? deeper.flatMap((i) => describeIssue({ ...i, path: [...issue.path, ...i.path] }))
      : [{ path, message: `${issue.message}, got ${describe(issue.input)}` }]
  }
  return [describeOne(issue, path)]
}

function describeOne(issue: z.core.$ZodIssue, path: (string | number)[]): Issue {
  if (issue.code === 'unrecognized_keys') {
    return {
      path: issue.keys.length === 1 ? [...path, issue.keys[0]] : path,
      message: `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}: remove ${issue.keys.length > 1 ? 'them' : 'it'} or check the spelling against config/devreg.yaml`,
    }
  }
  if (issue.code === 'invalid_type' && issue.input === undefined) return { path, message: `is required: add it (see config/devreg.yaml)` }
  if (issue.code === 'invalid_type') return { path, message: `${issue.message}, got ${describe(issue.input)}` }
  return { path, message: issue.message }
}

function describe(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'a list'
  if (typeof v === 'object') return 'a mapping'
  return `${typeof v} ${JSON.stringify(v)}`
}
