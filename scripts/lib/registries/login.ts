// The login a cache pulls from its upstream as: the mirror's own (names of
// environment variables), none, or else the user's `docker login` for the
// upstream's host, read as the Docker CLI reads it (docker/cli
// cli/config/configfile/file.go): credHelpers[host], else credsStore, else
// auths[host]. Parsing and choosing are pure; the environment, reading the
// file and asking a helper go through the runner, so tests need no $HOME.
import { join } from 'node:path'
import type { Registry } from '../core/config.ts'
import { type Result, type Runner, toolMessage } from '../core/exec.ts'
import { readTextOrNull } from '../core/machine.ts'

/** Where a login comes from; never a value. */
export type LoginSource = { kind: 'env'; usernameEnv: string; passwordEnv: string } | { kind: 'docker' }

export interface Login {
  username: string
  secret: string
  source: LoginSource
}

export type CacheLogin =
  | { state: 'anonymous' }
  | { state: 'login'; login: Login }
  /** There is a login, but not this run: its variables are not set, its helper failed. `problem` says why and what to do. */
  | { state: 'unavailable'; source: LoginSource; problem: string }

export const ANONYMOUS: CacheLogin = Object.freeze({ state: 'anonymous' })

/** The parts of the Docker client's config.json devreg reads. */
export interface DockerConfig {
  auths: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>
  credHelpers: Record<string, string>
  credsStore: string | null
}

/** What the Docker config says about one server, before any helper is asked. */
export type DockerLogin =
  | { kind: 'none' }
  | { kind: 'found'; username: string; secret: string }
  | { kind: 'helper'; helper: string; key: 'credHelpers' | 'credsStore' }
  | { kind: 'unusable'; reason: string }

/** What a login comes to once any helper has answered. */
export type HelperAnswer = Exclude<DockerLogin, { kind: 'helper' }>

/** Docker Hub's key in config.json and what its helpers are asked for (docker/cli registry.IndexServer). */
export const DOCKER_HUB_SERVER = 'https://index.docker.io/v1/'
const DOCKER_HUB_DOMAINS = ['docker.io', 'index.docker.io', 'registry-1.docker.io']
/** How long a credential helper may take: a locked keychain or a prompt nobody sees would hang the run. */
export const HELPER_TIMEOUT_MS = 10_000
// A helper name becomes part of a command name: docker-credential-NAME.
const HELPER_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/

/** `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`; null with neither set. */
export function dockerConfigPath(env: Readonly<Record<string, string | undefined>>): string | null {
  if (env.DOCKER_CONFIG) return join(env.DOCKER_CONFIG, 'config.json')
  return env.HOME ? join(env.HOME, '.docker', 'config.json') : null
}

/** The server a login for this upstream is stored under: Docker Hub's URL key, else the upstream's domain (name[:port]). */
export function loginServer(upstream: string): string {
  const domain = new URL(upstream).host
  return DOCKER_HUB_DOMAINS.includes(domain) ? DOCKER_HUB_SERVER : domain
}

/** A key as docker compares it with a server: without scheme or path (docker/cli credentials.ConvertToHostname). */
function hostOf(key: string): string {
  return key.replace(/^https?:\/\//, '').split('/')[0]
}

/** The entry for `server`: its exact key first, else one whose host is the server's (`https://ghcr.io` for ghcr.io). */
function entryFor<T>(map: Record<string, T>, server: string): T | undefined {
  if (Object.hasOwn(map, server)) return map[server]
  const key = Object.keys(map).find((k) => hostOf(k) === hostOf(server))
  return key === undefined ? undefined : map[key]
}

/** Reads config.json's text; anything that is not the file docker writes is an Error saying what. */
export function parseDockerConfig(text: string): DockerConfig {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch {
    // Not the parser's message: it can quote the text, logins included.
    throw new Error('it is not valid JSON')
  }
  if (!isObject(doc)) throw new Error('it is not a JSON object')
  const auths = doc.auths ?? {}
  const credHelpers = doc.credHelpers ?? {}
  const credsStore = doc.credsStore ?? null
  if (!isObject(auths) || !Object.values(auths).every(isObject)) throw new Error('"auths" is not an object of objects')
  if (!isObject(credHelpers) || !Object.values(credHelpers).every((h) => typeof h === 'string'))
    throw new Error('"credHelpers" is not an object of helper names')
  if (credsStore !== null && typeof credsStore !== 'string') throw new Error('"credsStore" is not a helper name')
  return { auths: auths as DockerConfig['auths'], credHelpers: credHelpers as Record<string, string>, credsStore: credsStore || null }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

const IDENTITY_TOKEN =
  "is an identity token (an OAuth login), which distribution's proxy cannot send: `docker login` with a user name and access token, or name environment variables in the mirror's credentials"

/** Which login docker would use for `server`, in docker's order: credHelpers, credsStore, auths. */
export function chooseDockerLogin(config: DockerConfig, server: string): DockerLogin {
  const helper = entryFor(config.credHelpers, server)
  if (helper) return { kind: 'helper', helper, key: 'credHelpers' }
  // With a credsStore, auths entries are empty markers `docker login` leaves: the store holds the login.
  if (config.credsStore) return { kind: 'helper', helper: config.credsStore, key: 'credsStore' }
  const entry = entryFor(config.auths, server)
  if (!entry) return { kind: 'none' }
  // docker reads `auth` over the separate fields.
  const [username, secret] = entry.auth ? (decodeAuth(entry.auth) ?? []) : [entry.username, entry.password]
  if (username && secret) return { kind: 'found', username, secret }
  // An OAuth login leaves "user:" in auth and its token beside it.
  if (entry.identitytoken) return { kind: 'unusable', reason: `its login for ${server} ${IDENTITY_TOKEN}` }
  if (entry.auth) return { kind: 'unusable', reason: `its "auth" for ${server} is not base64 of user:secret: run \`docker login\` again` }
  return { kind: 'none' }
}

/** `auth` as docker writes it: base64 of user:secret (docker/cli configfile decodeAuth). */
function decodeAuth(auth: string): [string, string] | null {
  const decoded = Buffer.from(auth, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  return colon > 0 ? [decoded.slice(0, colon), decoded.slice(colon + 1)] : null
}

/**
 * What `docker-credential-NAME get` answered: a login, none (the helper
 * knows no login for the server, docker-credential-helpers' "credentials not
 * found"), or a problem to warn about.
 */
export function parseHelperAnswer(r: Pick<Result, 'ok' | 'exitCode' | 'stdout' | 'stderr'>, server: string): HelperAnswer {
  if (!r.ok) {
    if (/credentials not found/i.test(r.stdout + r.stderr)) return { kind: 'none' }
    return { kind: 'unusable', reason: `failed (${toolMessage(r)}): run \`docker login\` again` }
  }
  let answer: unknown
  try {
    answer = JSON.parse(r.stdout)
  } catch {
    return { kind: 'unusable', reason: 'answered with something other than JSON' }
  }
  const { Username: username, Secret: secret } = isObject(answer) ? answer : {}
  if (typeof username !== 'string' || typeof secret !== 'string' || !secret)
    return { kind: 'unusable', reason: 'answered without a Username and Secret' }
  // docker-credential-helpers store identity tokens under this user name.
  if (username === '<token>') return { kind: 'unusable', reason: `answered for ${server} with a login that ${IDENTITY_TOKEN}` }
  return { kind: 'found', username, secret }
}

/**
 * The login of every cache, by container name (the local registry pulls from
 * nothing and has none). The Docker config is read once, and only when a
 * mirror leaves its credentials to it; helpers are asked in parallel.
 */
export async function cacheLogins(run: Runner, registries: readonly Registry[]): Promise<Map<string, CacheLogin>> {
  const caches = registries.filter((r) => r.role === 'cache')
  const docker = caches.some((r) => r.credentials === null) ? await readDockerConfig(run) : null
  const logins = await Promise.all(
    caches.map(async (r): Promise<[string, CacheLogin]> => {
      if (r.credentials === 'none') return [r.name, ANONYMOUS]
      if (r.credentials) return [r.name, envLogin(r, r.credentials, run.env)]
      return [r.name, await dockerLogin(run, r, docker as DockerConfigRead)]
    }),
  )
  return new Map(logins)
}

function envLogin(r: Registry, names: { usernameEnv: string; passwordEnv: string }, env: Runner['env']): CacheLogin {
  const source: LoginSource = { kind: 'env', ...names }
  const [username, secret] = [env[names.usernameEnv], env[names.passwordEnv]]
  if (username && secret) return { state: 'login', login: { username, secret, source } }
  const missing = [names.usernameEnv, names.passwordEnv].filter((n) => !env[n])
  const unset = missing.length === 1 ? `${missing[0]} is not set` : `${missing.join(' and ')} are not set`
  return {
    state: 'unavailable',
    source,
    problem: `${unset}: export ${missing.length === 1 ? 'it' : 'them'} (credentials for ${r.name}) or remove ${r.path}.credentials`,
  }
}

type DockerConfigRead = { path: string; config: DockerConfig } | { path: string; problem: string } | null

async function readDockerConfig(run: Runner): Promise<DockerConfigRead> {
  const path = dockerConfigPath(run.env)
  if (!path) return null
  try {
    const text = await readTextOrNull(run.files, path)
    return text === null ? null : { path, config: parseDockerConfig(text) }
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message
    return { path, problem: `${path} cannot be read (${why}): fix it (\`docker login\` rewrites it)` }
  }
}

const DOCKER: LoginSource = { kind: 'docker' }
const OPT_OUT = 'or set credentials: none on the mirror'

async function dockerLogin(run: Runner, r: Registry, read: DockerConfigRead): Promise<CacheLogin> {
  if (!read) return ANONYMOUS
  if ('problem' in read) return { state: 'unavailable', source: DOCKER, problem: `${read.problem}, ${OPT_OUT}` }
  const server = loginServer(r.upstream as string)
  const chosen = chooseDockerLogin(read.config, server)
  const found = chosen.kind === 'helper' ? await askHelper(run, chosen, read.path, server) : chosen
  if (found.kind === 'none') return ANONYMOUS
  if (found.kind === 'found') return { state: 'login', login: { username: found.username, secret: found.secret, source: DOCKER } }
  return { state: 'unavailable', source: DOCKER, problem: `${found.reason}, ${OPT_OUT}` }
}

/** `docker-credential-NAME get` with the server on stdin, as docker asks it: no terminal, and a time limit. */
async function askHelper(
  run: Runner,
  { helper, key }: { helper: string; key: string },
  path: string,
  server: string,
): Promise<HelperAnswer> {
  const command = `docker-credential-${helper}`
  const named = `${command} (${key} in ${path})`
  if (!HELPER_NAME.test(helper)) return { kind: 'unusable', reason: `${JSON.stringify(helper)} (${key} in ${path}) is not a helper name` }
  const r = await run.probe([command, 'get'], { input: server, timeout: HELPER_TIMEOUT_MS })
  if (r.timedOut)
    return {
      kind: 'unusable',
      reason: `${named} did not answer within ${HELPER_TIMEOUT_MS / 1000} s (a locked keychain, or a prompt it waits for): check that \`${command} list\` answers`,
    }
  if (r.exitCode === null || (r.exitCode === 127 && /not found/i.test(r.stderr)))
    return { kind: 'unusable', reason: `${named} is not on PATH: install it, or remove ${key} from ${path}` }
  const answer = parseHelperAnswer(r, server)
  return answer.kind === 'unusable' ? { kind: 'unusable', reason: `${named} ${answer.reason}` } : answer
}

/** How `status` says whom a cache pulls as; `withLogin`: its settings pass the proxy a login (registrySpec). */
export function describeLogin(login: CacheLogin, withLogin: boolean): string {
  if (login.state === 'anonymous') return 'anonymous'
  const source = login.state === 'login' ? login.login.source : login.source
  const from = source.kind === 'env' ? `env ${source.passwordEnv}` : 'docker login'
  if (login.state === 'login') return `authenticated as ${login.login.username} (${from})`
  if (source.kind === 'env') return `not known here (${from} is not set)`
  return withLogin ? `as created (${from} unreadable)` : `anonymous (${from} unreadable)`
}

/** The container variables distribution's proxy reads its upstream login from. */
export const PROXY_LOGIN_ENV = ['REGISTRY_PROXY_USERNAME', 'REGISTRY_PROXY_PASSWORD'] as const

/** The proxy's login as the container's environment wants it: the values, for the runner's secretEnv only. */
export function proxyLoginEnv(login: Login): Record<(typeof PROXY_LOGIN_ENV)[number], string> {
  return { REGISTRY_PROXY_USERNAME: login.username, REGISTRY_PROXY_PASSWORD: login.secret }
}
