// A hub that requires a login the way Docker Hub does: a distribution
// registry with token auth (REGISTRY_AUTH=token) and a token server of the
// tests' own (test/images/token-server) that checks Basic user:secret and
// signs an RS256 JWT with an x5c header. distribution's proxy sends its
// upstream login only to a Bearer realm (registry/proxy/proxyauth.go
// getAuthURLs), and 3.1 only to a realm on the upstream's host:port or its
// registrable domain, never an IP literal or localhost (realmAllowed): so the
// hub and the token server are DNS names under one domain, network aliases on
// the test's network, where the caches devreg creates resolve them.
import { createHash } from 'node:crypto'
import { mkdirSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { $ } from 'zx'
import { type Fixture, freePort, waitHttp } from './fixture.ts'
import { REGISTRY_IMAGE, type Sample, TOKEN_SERVER_IMAGE } from './images.ts'
import { seed } from './registry.ts'

const DOMAIN = 'devreg.test'
const SERVICE = 'devreg-test-hub'
const ISSUER = 'devreg-test-auth'
const TOKEN_PORT = 5001

export interface FakeHub {
  /** The upstream a mirror names: http://hub.devreg.test:5000. */
  upstream: string
  /** Its key in a Docker config's auths and what a credential helper is asked for. */
  server: string
  /** The hub's and token server's containers. */
  containers: string[]
  /** Lets `user` log in with `secret` from now on (a second call changes the secret). */
  addUser(user: string, secret: string): void
  /** How many tokens the token server issued to `user`. */
  issued(user: string): Promise<number>
  /** How many token requests without credentials it refused. */
  refusedAnonymous(): Promise<number>
}

/**
 * Starts the hub (on `image`, holding `images` as repo → sample, seeded
 * before auth is on) and its token server on `network`; the fixture removes them.
 */
export async function fakeHub(fx: Fixture, network: string, image: string, images: Record<string, Sample>): Promise<FakeHub> {
  const auth = join(fx.dir, 'hub-auth')
  mkdirSync(auth)
  const q = $({ quiet: true })
  await q`openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj ${'/CN=devreg test token issuer'} -keyout ${join(auth, 'key.pem')} -out ${join(auth, 'cert.pem')}`
  await q`chmod a+r ${join(auth, 'key.pem')}`
  const users: Record<string, string> = {}
  // Written aside and renamed into place: the token server never reads half a file.
  const writeUsers = () => {
    writeFileSync(join(auth, 'users.json.tmp'), JSON.stringify(users))
    renameSync(join(auth, 'users.json.tmp'), join(auth, 'users.json'))
  }
  writeUsers()

  // 1. The images, pushed to a plain registry on the hub's volume.
  const volume = fx.name('hub-data', 'volume')
  const seeder = fx.name('hub-seeder')
  const seedPort = await freePort()
  await q`docker run -d --name ${seeder} -v ${`${volume}:/var/lib/registry`} -p ${`127.0.0.1:${seedPort}:5000`} ${REGISTRY_IMAGE}`
  await waitHttp(`http://127.0.0.1:${seedPort}/v2/`)
  for (const [repo, sample] of Object.entries(images)) await seed(seedPort, sample, repo)
  await q`docker rm -f ${seeder}`

  // 2. The token server and the hub, each known on the network by a name under DOMAIN.
  const tokenServer = fx.name('hub-auth')
  const tokenPort = await freePort()
  await q`docker run -d --name ${tokenServer} --network ${network} --network-alias ${`auth.${DOMAIN}`} -e ${`TOKEN_ISSUER=${ISSUER}`} -e ${`PORT=${TOKEN_PORT}`} -v ${`${auth}:/auth:ro`} -p ${`127.0.0.1:${tokenPort}:${TOKEN_PORT}`} ${TOKEN_SERVER_IMAGE}`
  const hub = fx.name('hub')
  const hubPort = await freePort()
  const settings = {
    REGISTRY_AUTH: 'token',
    REGISTRY_AUTH_TOKEN_REALM: `http://auth.${DOMAIN}:${TOKEN_PORT}/token`,
    REGISTRY_AUTH_TOKEN_SERVICE: SERVICE,
    REGISTRY_AUTH_TOKEN_ISSUER: ISSUER,
    REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE: '/auth/cert.pem',
  }
  const env = Object.entries(settings).flatMap(([k, v]) => ['-e', `${k}=${v}`])
  await q`docker run -d --name ${hub} --network ${network} --network-alias ${`hub.${DOMAIN}`} ${env} -v ${`${volume}:/var/lib/registry`} -v ${`${auth}:/auth:ro`} -p ${`127.0.0.1:${hubPort}:5000`} ${image}`
  await waitHttp(`http://127.0.0.1:${tokenPort}/`)
  await waitHttp(`http://127.0.0.1:${hubPort}/v2/`)

  const lines = async () => {
    const r = await q`docker logs ${tokenServer}`
    return r.stdout.split('\n')
  }
  return {
    upstream: `http://hub.${DOMAIN}:5000`,
    server: `hub.${DOMAIN}:5000`,
    containers: [hub, tokenServer],
    addUser(user, secret) {
      users[user] = createHash('sha256').update(secret).digest('hex')
      writeUsers()
    },
    issued: async (user) => (await lines()).filter((l) => l.startsWith(`issued ${user} `)).length,
    refusedAnonymous: async () => (await lines()).filter((l) => l.startsWith('refused anonymous ')).length,
  }
}
