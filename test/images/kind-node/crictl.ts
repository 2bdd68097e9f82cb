// A crictl for test nodes (crictl is not in Debian): `crictl pull REF` through
// CRI runtime.v1.ImageService/PullImage, the call the kubelet makes, and
// `crictl --version`; everything else is refused loudly. Compiled with
// `bun build --compile` into one executable (test/kit/crictl.ts) and put
// at /usr/local/bin/crictl in the rig's kind nodes and /bin/crictl in the k3d
// stand-in's nodes, where real kind and k3s nodes have cri-tools' crictl.
//
// The two messages are encoded by hand (no .proto file to embed): field
// numbers of k8s.io/cri-api pkg/apis/runtime/v1/api.proto, PullImageRequest
// {ImageSpec image = 1} with ImageSpec {string image = 1}, and
// PullImageResponse {string image_ref = 1}.
import { readFileSync } from 'node:fs'
import * as grpc from '@grpc/grpc-js'

const VERSION = 'crictl version v1.34.0 (devreg test stand-in: pull only)'
const PULL = '/runtime.v1.ImageService/PullImage'

function refuse(what: string): never {
  process.stderr.write(`crictl (devreg test stand-in): ${what}\n`)
  process.exit(1)
}

function varint(n: number): number[] {
  const out: number[] = []
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80)
    n >>>= 7
  }
  out.push(n)
  return out
}

/** A protobuf message whose one field, number 1, is length-delimited. */
const field1 = (bytes: Uint8Array) => Buffer.from([0x0a, ...varint(bytes.length), ...bytes])

/** Field 1 (a string) of a protobuf message; other fields are skipped. */
function readField1(buf: Buffer): string {
  let i = 0
  const readVarint = () => {
    let n = 0
    let shift = 0
    for (;;) {
      const b = buf[i++]
      n += (b & 0x7f) * 2 ** shift
      if (b < 0x80) return n
      shift += 7
    }
  }
  while (i < buf.length) {
    const key = readVarint()
    const wire = key & 7
    if (wire === 2) {
      const len = readVarint()
      if (key >>> 3 === 1) return buf.subarray(i, i + len).toString('utf8')
      i += len
    } else if (wire === 0) readVarint()
    else if (wire === 1) i += 8
    else if (wire === 5) i += 4
    else break
  }
  return ''
}

/** crictl's own order: --runtime-endpoint, CONTAINER_RUNTIME_ENDPOINT, the config file (CRI_CONFIG_FILE or /etc/crictl.yaml), containerd's socket. */
function endpoint(flag: string | undefined): string {
  if (flag) return flag
  if (process.env.CONTAINER_RUNTIME_ENDPOINT) return process.env.CONTAINER_RUNTIME_ENDPOINT
  try {
    const text = readFileSync(process.env.CRI_CONFIG_FILE || '/etc/crictl.yaml', 'utf8')
    const m = /^\s*(?:image|runtime)-endpoint:\s*["']?([^"'\s]+)/m.exec(text)
    if (m) return m[1]
  } catch {}
  return 'unix:///run/containerd/containerd.sock'
}

/** Seconds from crictl's duration syntax (2s, 500ms, 1m); 0 means none. */
function seconds(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text)
  if (!m) refuse(`invalid value "${text}" for --timeout`)
  return Number(m[1]) * ({ ms: 0.001, s: 1, m: 60 }[m[2] ?? 's'] as number)
}

function klogTime(): string {
  const d = new Date()
  const p = (n: number, w = 2) => String(n).padStart(w, '0')
  return `${p(d.getMonth() + 1)}${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds() * 1000, 6)}`
}

async function pull(ref: string, target: string, timeoutSec: number): Promise<number> {
  const address = target.replace(/^unix:\/\//, 'unix:')
  const client = new grpc.Client(address, grpc.credentials.createInsecure())
  const request = field1(field1(Buffer.from(ref)))
  try {
    const imageRef = await new Promise<string>((resolve, reject) => {
      const options = timeoutSec > 0 ? { deadline: Date.now() + timeoutSec * 1000 } : {}
      client.makeUnaryRequest(
        PULL,
        (b: Buffer) => b,
        (b: Buffer) => readField1(b),
        request,
        new grpc.Metadata(),
        options,
        (err, res) => (err ? reject(err) : resolve(res as string)),
      )
    })
    process.stdout.write(`Image is up to date for ${imageRef}\n`)
    return 0
  } catch (err) {
    const e = err as grpc.ServiceError
    // Go's codes.Code names, as crictl prints them: NOT_FOUND → NotFound.
    const name = typeof e.code === 'number' ? grpc.status[e.code] : 'UNKNOWN'
    const code = name.toLowerCase().replace(/(^|_)([a-z])/g, (_, __, c: string) => c.toUpperCase())
    process.stderr.write(
      `E${klogTime()} ${String(process.pid).padStart(7)} crictl.go] pulling image: rpc error: code = ${code} desc = ${e.details ?? e.message}\n`,
    )
    return 1
  } finally {
    client.close()
  }
}

async function main(argv: string[]): Promise<number> {
  let runtimeEndpoint: string | undefined
  let timeout = 0
  const args: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const [key, inline] = a.split(/=(.*)/s, 2)
    const value = () => inline ?? argv[++i] ?? refuse(`flag needs an argument: ${key}`)
    if (a === '--version' || a === '-v') {
      process.stdout.write(`${VERSION}\n`)
      return 0
    } else if (key === '--runtime-endpoint' || key === '-r' || key === '--image-endpoint' || key === '-i') runtimeEndpoint = value()
    else if (key === '--timeout' || key === '-t') timeout = seconds(value())
    else if (a.startsWith('-'))
      refuse(`unknown flag ${key}: the stand-in implements --runtime-endpoint, --image-endpoint, --timeout, --version`)
    else args.push(a)
  }
  const [command, ...rest] = args
  if (command !== 'pull') refuse(`unknown command "${command ?? ''}": the stand-in implements pull and --version only`)
  if (rest.length !== 1) refuse('pull takes exactly one image reference (and no pull flags)')
  return pull(rest[0], endpoint(runtimeEndpoint), timeout)
}

process.exitCode = await main(process.argv.slice(2))
