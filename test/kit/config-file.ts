// A devreg config file in a test's or a bench section's scratch directory.
// Node APIs only: the bench imports it under tsx too.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { stringify } from 'yaml'

/** Writes doc as YAML to dir/file; its path. */
export function writeConfig(dir: string, doc: unknown, file = 'devreg.yaml'): string {
  const path = join(dir, file)
  writeFileSync(path, stringify(doc))
  return path
}
