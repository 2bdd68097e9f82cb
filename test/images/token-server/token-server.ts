// A token server the way Docker Hub's auth.docker.io answers distribution:
// GET /token?service=S&scope=repository:NAME:pull with Basic user:secret
// returns {"token": JWT}, the JWT signed RS256 with an x5c header holding the
// certificate the hub trusts (REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE). Users are
// /auth/users.json, {user: sha256 of the secret}, read on every request; no
// secret is logged. Each answer is one line on stdout, which tests count:
//   issued USER SCOPE...   |   refused USER|anonymous REASON
import { createHash, randomBytes, sign } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'

const AUTH = process.env.AUTH_DIR ?? '/auth'
const ISSUER = process.env.TOKEN_ISSUER ?? 'devreg-test-auth'
const key = readFileSync(`${AUTH}/key.pem`, 'utf8')
// x5c holds the DER certificate, base64 (RFC 7515 4.1.6): the PEM body.
const x5c = [readFileSync(`${AUTH}/cert.pem`, 'utf8').replace(/-----[^-]+-----|\s/g, '')]
const b64url = (data: string | Buffer) => Buffer.from(data).toString('base64url')

function jwt(claims: Record<string, unknown>): string {
  const input = `${b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', x5c }))}.${b64url(JSON.stringify(claims))}`
  return `${input}.${b64url(sign('RSA-SHA256', Buffer.from(input), key))}`
}

/** The user whose Basic credentials match users.json, or why not. */
function authenticate(header: string | undefined): { user: string } | { refused: string; reason: string } {
  if (!header?.startsWith('Basic ')) return { refused: 'anonymous', reason: 'no credentials' }
  const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  const [user, secret] = [decoded.slice(0, colon), decoded.slice(colon + 1)]
  const users = JSON.parse(readFileSync(`${AUTH}/users.json`, 'utf8')) as Record<string, string>
  const digest = createHash('sha256').update(secret).digest('hex')
  return users[user] === digest ? { user } : { refused: user || 'anonymous', reason: 'wrong user or secret' }
}

createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://auth')
  if (url.pathname !== '/token') {
    res.writeHead(404).end()
    return
  }
  const who = authenticate(req.headers.authorization)
  if ('refused' in who) {
    console.log(`refused ${who.refused} ${who.reason}`)
    res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ details: who.reason }))
    return
  }
  // Every requested repository, pull only: scope is TYPE:NAME:ACTIONS, and a name may hold a colon (host:port).
  const scopes = url.searchParams
    .getAll('scope')
    .flatMap((s) => s.split(' '))
    .filter(Boolean)
  const access = scopes.map((s) => {
    const [type, ...rest] = s.split(':')
    const actions = (rest.pop() ?? '').split(',').filter((a) => a === 'pull')
    return { type, name: rest.join(':'), actions }
  })
  const now = Math.floor(Date.now() / 1000)
  const token = jwt({
    iss: ISSUER,
    sub: who.user,
    aud: url.searchParams.get('service') ?? '',
    exp: now + 300,
    nbf: now - 30,
    iat: now,
    jti: randomBytes(8).toString('hex'),
    access,
  })
  console.log(`issued ${who.user} ${scopes.join(' ')}`)
  res
    .writeHead(200, { 'content-type': 'application/json' })
    .end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date(now * 1000).toISOString() }))
}).listen(Number(process.env.PORT ?? 5001), () => console.log('listening'))
