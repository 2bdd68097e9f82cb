// Whether devreg may ask depends on stdin being a terminal (cli.ts confirm):
// tests of what happens without one make it so, whoever runs them from where.
import { afterAll, beforeAll } from 'bun:test'

/** For the tests of the calling file (or describe block): stdin is no terminal, so a question is refused, never waited on. */
export function noTerminal(): void {
  let saved: PropertyDescriptor | undefined
  beforeAll(() => {
    saved = Object.getOwnPropertyDescriptor(process.stdin, 'isTTY')
    Object.defineProperty(process.stdin, 'isTTY', { value: false, configurable: true })
  })
  afterAll(() => {
    if (saved) Object.defineProperty(process.stdin, 'isTTY', saved)
    else Reflect.deleteProperty(process.stdin, 'isTTY')
  })
}
