// One DNS question over UDP to a given server, for the tests that ask a
// node's CoreDNS directly: the answer section as data, each record with the
// owner name it answers for (node:dns gives addresses only).
import { randomBytes } from 'node:crypto'
import { createSocket } from 'node:dgram'

export interface DnsRecord {
  name: string
  /** A, CNAME or the record type's number. */
  type: string
  /** The address of an A record, the target of a CNAME. */
  data: string
}

export interface DnsReply {
  /** NOERROR, NXDOMAIN, SERVFAIL, … */
  rcode: string
  answers: DnsRecord[]
}

const RCODES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED']

function question(id: Buffer, name: string): Buffer {
  const labels = name.replace(/\.$/, '').split('.')
  const qname = Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0])])
  // Recursion desired, one question; type A, class IN.
  return Buffer.concat([id, Buffer.from([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]), qname, Buffer.from([0, 1, 0, 1])])
}

/** A (possibly compressed) name at `at`; returns it and the offset after it in the record. */
function readName(msg: Buffer, at: number): [string, number] {
  const labels: string[] = []
  let pos = at
  let end = -1
  for (let hops = 0; hops < 64; hops++) {
    const len = msg[pos]
    if (len === 0) return [labels.join('.'), end < 0 ? pos + 1 : end]
    if ((len & 0xc0) === 0xc0) {
      if (end < 0) end = pos + 2
      pos = ((len & 0x3f) << 8) | msg[pos + 1]
    } else {
      labels.push(msg.subarray(pos + 1, pos + 1 + len).toString())
      pos += len + 1
    }
  }
  throw new Error('DNS reply: name compression loops')
}

function parse(msg: Buffer): DnsReply {
  const rcode = RCODES[msg[3] & 0x0f] ?? String(msg[3] & 0x0f)
  const [qd, an] = [msg.readUInt16BE(4), msg.readUInt16BE(6)]
  let pos = 12
  for (let i = 0; i < qd; i++) pos = readName(msg, pos)[1] + 4
  const answers: DnsRecord[] = []
  for (let i = 0; i < an; i++) {
    const [name, after] = readName(msg, pos)
    const type = msg.readUInt16BE(after)
    const length = msg.readUInt16BE(after + 8)
    const data = after + 10
    if (type === 1) answers.push({ name, type: 'A', data: [...msg.subarray(data, data + 4)].join('.') })
    else if (type === 5) answers.push({ name, type: 'CNAME', data: readName(msg, data)[0] })
    else answers.push({ name, type: String(type), data: msg.subarray(data, data + length).toString('hex') })
    pos = data + length
  }
  return { rcode, answers }
}

/** Asks `server` (an IPv4 address) for the A records of `name`; rejects when no reply comes within timeoutMs. */
export function queryA(server: string, name: string, opts: { port?: number; timeoutMs?: number } = {}): Promise<DnsReply> {
  const id = randomBytes(2)
  const socket = createSocket('udp4')
  return new Promise<DnsReply>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no DNS reply from ${server} for ${name}`)), opts.timeoutMs ?? 2000)
    socket.on('message', (msg) => {
      if (msg.length < 12 || !msg.subarray(0, 2).equals(id)) return
      clearTimeout(timer)
      try {
        resolve(parse(msg))
      } catch (err) {
        reject(err)
      }
    })
    socket.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    socket.send(question(id, name), opts.port ?? 53, server)
  }).finally(() => socket.close())
}
