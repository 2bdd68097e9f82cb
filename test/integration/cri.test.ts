// The CRI image client (test/kit/cri.ts) against a real containerd 2 run on
// the host with its own root, state and socket, pulling from Debian's registry.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { criImageStatus, criPull, criRemove } from '../kit/cri.ts'
import { freePort, integration, waitHttp } from '../kit/fixture.ts'
import { layer, type PushedImage, pushImage } from '../kit/push.ts'
import { packageTree } from '../kit/rig/packages.ts'

const REGISTRY_BINARY = '/usr/bin/docker-registry'

async function containerd2(): Promise<string | null> {
  let why: string
  try {
    const binary = join(await packageTree('containerd2'), 'usr/bin/containerd')
    if (existsSync(binary) && existsSync(REGISTRY_BINARY)) return binary
    why = `${existsSync(binary) ? REGISTRY_BINARY : binary} is missing`
  } catch (err) {
    why = (err as Error).message
  }
  if (process.env.DEVREG_REQUIRE_DOCKER === '1') throw new Error(`DEVREG_REQUIRE_DOCKER=1 but the CRI tests cannot run: ${why}`)
  console.error(`SKIPPING CRI client tests: ${why} (bun test/kit/rig/packages.ts fetches containerd 2; apt-get install docker-registry)`)
  return null
}

const containerd = await containerd2()

;(containerd ? integration : describe.skip)('CRI image client against containerd 2', () => {
  let dir: string
  let socket: string
  const children: ChildProcess[] = []
  let registry: string
  let image: PushedImage
  let ref: string

  // Logs go to files: a pipe nobody reads would block the daemon once full.
  const start = (name: string, cmd: string, args: string[], env: Record<string, string> = {}) => {
    const log = openSync(join(dir, `${name}.log`), 'w')
    children.push(spawn(cmd, args, { stdio: ['ignore', log, log], env: { ...process.env, ...env } }))
  }
  const containerdLog = () => readFileSync(join(dir, 'containerd.log'), 'utf8').split('\n').slice(-20).join('\n')

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'devreg-cri-'))
    socket = join(dir, 'containerd.sock')
    const port = await freePort()
    registry = `127.0.0.1:${port}`
    const config = join(dir, 'registry.yml')
    writeFileSync(
      config,
      `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/registry\nhttp:\n  addr: ${registry}\n`,
    )
    start('registry', REGISTRY_BINARY, ['serve', config])

    // A plain-HTTP registry is reached through hosts.toml (containerd docs/hosts.md);
    // 2.x migrates this version 2 key to io.containerd.cri.v1.images.
    mkdirSync(join(dir, 'certs.d', registry), { recursive: true })
    writeFileSync(join(dir, 'certs.d', registry, 'hosts.toml'), `server = "http://${registry}"\n`)
    writeFileSync(
      join(dir, 'containerd.toml'),
      [
        'version = 2',
        `root = "${dir}/root"`,
        `state = "${dir}/state"`,
        '[grpc]',
        `  address = "${socket}"`,
        '[plugins."io.containerd.grpc.v1.cri".registry]',
        `  config_path = "${dir}/certs.d"`,
        '',
      ].join('\n'),
    )
    start('containerd', containerd as string, ['--config', join(dir, 'containerd.toml')])

    await waitHttp(`http://${registry}/v2/`)
    image = await pushImage(`http://${registry}`, 'cri/sample', '1', { layers: [layer(200_000)], created: new Date() })
    ref = `${registry}/cri/sample:1`

    const deadline = Date.now() + 10_000
    for (;;) {
      try {
        await criImageStatus(socket, ref, { timeoutMs: 1000 })
        break
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`containerd's CRI image service did not answer: ${err}\n${containerdLog()}`)
        await Bun.sleep(100)
      }
    }
  })

  afterAll(async () => {
    for (const child of children) child.kill('SIGTERM')
    await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : null)))
    // containerd may leave overlay mounts under its root when killed mid-pull.
    if (dir) rmSync(dir, { recursive: true, force: true, maxRetries: 3 })
  })

  test('a pull through CRI is known by tag and by the manifest digest', async () => {
    const pulled = await criPull(socket, ref)
    expect(pulled.error).toBeUndefined()
    expect(pulled.ok).toBe(true)
    expect(pulled.imageRef).toStartWith('sha256:')

    const status = await criImageStatus(socket, ref)
    expect(status?.id).toBe(pulled.imageRef as string)
    expect(status?.repoTags).toContain(ref)
    expect(status?.repoDigests).toContain(`${registry}/cri/sample@${image.digest}`)
    expect(status?.size).toBeGreaterThan(200_000)
    expect(await criImageStatus(socket, `${registry}/cri/sample@${image.digest}`)).toEqual(status)
  })

  test('a removed image is gone, removing it again is fine, and it pulls again', async () => {
    expect((await criPull(socket, ref)).ok).toBe(true)
    await criRemove(socket, ref)
    expect(await criImageStatus(socket, ref)).toBeNull()
    await criRemove(socket, ref)
    expect((await criPull(socket, ref)).ok).toBe(true)
    expect(await criImageStatus(socket, ref)).not.toBeNull()
  })

  test("a missing reference is ok: false with containerd's error", async () => {
    const missing = `${registry}/cri/missing:1`
    const pulled = await criPull(socket, missing)
    expect(pulled).toEqual({ ok: false, error: expect.stringContaining('not found') })
    expect(pulled.error).toContain(missing)
    expect(await criImageStatus(socket, missing)).toBeNull()
  })

  test('a socket nobody serves is ok: false, not a hang', async () => {
    const pulled = await criPull(join(dir, 'nobody.sock'), ref, { timeoutMs: 2000 })
    expect(pulled.ok).toBe(false)
    expect(pulled.error).toContain('UNAVAILABLE')
  })
})
