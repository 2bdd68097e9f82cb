// The machine devreg runs on: its ports and addresses.
import { createServer } from 'node:net'
import { networkInterfaces } from 'node:os'

/** True when nothing listens on bind:port (we could bind it ourselves). */
export function portFree(bind: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen({ host: bind, port, exclusive: true }, () => server.close(() => resolve(true)))
  })
}

/** 127.0.0.0/8 and ::1: inside a container these mean the container itself. */
export function isLoopback(address: string): boolean {
  return /^127\.\d+\.\d+\.\d+$/.test(address) || address === '::1'
}

/** An address that means this machine: loopback, unspecified, or one of its interfaces. */
export function isLocalAddress(address: string): boolean {
  if (isLoopback(address) || address === '0.0.0.0' || address === '::') return true
  return Object.values(networkInterfaces()).some((list) => list?.some((i) => i.address === address))
}
