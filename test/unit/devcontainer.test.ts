// The devcontainer's features (its setup script runs in test/cli/postcreate.test.ts).
import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from '../kit/scripts.ts'

describe('devcontainer.json', () => {
  const doc = JSON.parse(readFileSync(join(ROOT, '.devcontainer/devcontainer.json'), 'utf8'))
  const features = Object.keys(doc.features)

  test("runs its own Docker (the host's loopback ports and kind's kubeconfig are out of reach from a devcontainer), with Node and just", () => {
    expect(features.some((f) => f.includes('/docker-in-docker:'))).toBe(true)
    expect(features.some((f) => f.includes('docker-outside-of-docker'))).toBe(false)
    expect(features.some((f) => f.includes('/node:'))).toBe(true)
    expect(features.some((f) => f.includes('/just:'))).toBe(true)
  })
})
