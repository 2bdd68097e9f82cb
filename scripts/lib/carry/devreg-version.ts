// devreg's own version, as package.json gives it: what an archive records it was made by.
import { readFileSync } from 'node:fs'
import { ROOT } from '../core/config.ts'

export function devregVersion(): string {
  return (JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { version: string }).version
}
