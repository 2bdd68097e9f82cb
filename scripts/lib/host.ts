// The machine devreg runs on: its ports.
import { createServer } from 'node:net'

/** True when nothing listens on bind:port (we could bind it ourselves). */
export function portFree(bind: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen({ host: bind, port, exclusive: true }, () => server.close(() => resolve(true)))
  })
}
