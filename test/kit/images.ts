// Builds the images the integration tests share, once, before the test files
// run in parallel: registry:3 (the real distribution v3, built from its Go
// module) and registry:2 (Debian's docker-registry 2.8), each laid out like its
// official image, the fake hub's token server, and small sample images of
// random data.
// Run: bun test/kit/images.ts   (just test does it first)
import { createHash, randomBytes } from 'node:crypto'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { $ } from 'zx'
import { goProgram } from './rig/go-programs.ts'

/** Laid out like the official registry:2: /etc/docker/registry/config.yml, info logging. */
export const REGISTRY2_IMAGE = 'devreg-test/registry:2'
/** distribution v3.1.1 laid out like the official registry:3: /etc/distribution/config.yml, debug logging, metrics on :5001. */
export const REGISTRY3_IMAGE = 'devreg-test/registry:3'
/** The tests' default registry image, as registry:3 is devreg's default. */
export const REGISTRY_IMAGE = REGISTRY3_IMAGE
/** Both layouts, for the tests that must pass on each. */
export const REGISTRY_LAYOUTS = [
  { layout: 'registry:3', image: REGISTRY3_IMAGE },
  { layout: 'registry:2', image: REGISTRY2_IMAGE },
] as const
/** A containerd node (test/images/node) for the bench's pulls and as a plain base image: real containerd, no kubelet. */
export const NODE_IMAGE = 'devreg-test/node:1'
/** busybox and curl, for pods that run (test/images/toolbox). */
const here = dirname(fileURLToPath(import.meta.url))
const TOKEN_SERVER = join(here, '../images/token-server/token-server.ts')
/** The fake hub's token server (test/kit/fake-hub.ts), tagged by its script's content so an edit builds anew. */
export const TOKEN_SERVER_IMAGE = `devreg-test/token-server:${createHash('sha256').update(readFileSync(TOKEN_SERVER)).digest('hex').slice(0, 12)}`
const CURL = '/usr/bin/curl'
/** An image that runs, for pods (test/images/toolbox), tagged by its Dockerfile and this machine's curl: either changed builds anew. */
export const TOOLBOX_IMAGE = `devreg-test/toolbox:${createHash('sha256')
  .update(readFileSync(join(here, '../images/toolbox/Dockerfile')))
  .update(existsSync(CURL) ? readFileSync(CURL) : '')
  .digest('hex')
  .slice(0, 12)}`
/** Sample images: name → layer sizes in bytes. */
export const SAMPLES = {
  alpha: [1_500_000, 700_000],
  beta: [900_000],
  gamma: [1_200_000, 300_000],
  delta: [800_000],
  epsilon: [600_000, 400_000],
  zeta: [500_000],
} as const
export type Sample = keyof typeof SAMPLES
export const sampleImage = (name: Sample) => `devreg-test/sample-${name}:1`

async function imageExists(ref: string): Promise<boolean> {
  return (await $({ nothrow: true, quiet: true })`docker image inspect ${ref}`).exitCode === 0
}

/**
 * A build context for test/images/NAME/Dockerfile: a root filesystem of the
 * given host files, their shared libraries (as ldd lists them), busybox for a
 * shell and tools, and an nsswitch.conf (glibc resolves names through files, then DNS).
 */
export async function scratchContext(name: string, files: [from: string, to: string][]): Promise<string> {
  const ctx = mkdtempSync(join(tmpdir(), `devreg-${name}-image-`))
  const rootfs = join(ctx, 'rootfs')
  const put = (from: string, to: string) => {
    mkdirSync(dirname(join(rootfs, to)), { recursive: true })
    copyFileSync(from, join(rootfs, to))
  }
  const libs = new Set<string>()
  for (const [from] of files) {
    const ldd = await $({ quiet: true, nothrow: true })`ldd ${from}`
    for (const m of ldd.stdout.matchAll(/(\/\S+\.so[^\s]*)/g)) libs.add(m[1])
  }
  for (const [from, to] of [...files, ['/bin/busybox', 'bin/busybox'] as [string, string]]) put(from, to)
  for (const lib of libs) put(lib, lib.slice(1))
  mkdirSync(join(rootfs, 'etc'), { recursive: true })
  writeFileSync(join(rootfs, 'etc/nsswitch.conf'), 'hosts: files dns\n')
  mkdirSync(join(rootfs, 'tmp'))
  mkdirSync(join(rootfs, 'var/lib'), { recursive: true })
  await $`chmod 1777 ${join(rootfs, 'tmp')}`
  await $`chmod -R a+rX ${rootfs}`
  for (const [, to] of files) if (!to.startsWith('etc/')) await $`chmod 755 ${join(rootfs, to)}`
  await $`chmod 755 ${join(rootfs, 'bin/busybox')}`
  copyFileSync(join(here, `../images/${name}/Dockerfile`), join(ctx, 'Dockerfile'))
  return ctx
}

/** Builds test/images/NAME/Dockerfile on scratchContext's root filesystem. */
async function buildFromScratch(tag: string, name: string, files: [from: string, to: string][], labels: string[] = []): Promise<void> {
  const ctx = await scratchContext(name, files)
  await $({ quiet: true })`docker build --quiet ${labels.flatMap((l) => ['--label', l])} --tag ${tag} ${ctx}`
}

/** registry:2: Debian's distribution 2.8, laid out like the official image (test/images/registry). */
async function buildRegistry2Image(): Promise<void> {
  if (await imageExists(REGISTRY2_IMAGE)) return
  const binary = '/usr/bin/docker-registry'
  if (!existsSync(binary)) throw new Error(`${binary} not found: apt-get install docker-registry, then run the tests again`)
  await buildFromScratch(REGISTRY2_IMAGE, 'registry', [
    [binary, 'bin/registry'],
    [join(here, '../images/registry/entrypoint.sh'), 'entrypoint.sh'],
    [join(here, '../images/registry/config.yml'), 'etc/docker/registry/config.yml'],
  ])
}

/** registry:3: distribution v3.1.1 from its Go module (test/images/registry3), rebuilt when the program's version changes. */
async function buildRegistry3Image(): Promise<void> {
  const bin = await goProgram('registry')
  const marker = `devreg.test.registry=${bin.split('/').pop()}`
  const labels = await $({ quiet: true, nothrow: true })`docker image inspect --format ${'{{json .Config.Labels}}'} ${REGISTRY3_IMAGE}`
  if (labels.exitCode === 0 && labels.stdout.includes(JSON.stringify(marker.split('=')[1]))) return
  await buildFromScratch(
    REGISTRY3_IMAGE,
    'registry3',
    [
      [join(bin, 'registry'), 'bin/registry'],
      [join(here, '../images/registry3/entrypoint.sh'), 'entrypoint.sh'],
      [join(here, '../images/registry3/config.yml'), 'etc/distribution/config.yml'],
    ],
    [marker],
  )
}

async function buildNodeImage(): Promise<void> {
  if (await imageExists(NODE_IMAGE)) return
  const binaries = ['/usr/bin/containerd', '/usr/bin/ctr', '/usr/bin/containerd-shim-runc-v2', '/usr/sbin/runc', '/usr/bin/getent']
  const missing = binaries.filter((b) => !existsSync(b))
  if (missing.length) throw new Error(`${missing.join(', ')} not found: apt-get install containerd runc, then run the tests again`)
  await buildFromScratch(NODE_IMAGE, 'node', [
    ...binaries.map((b): [string, string] => [b, `bin/${b.split('/').pop()}`]),
    [join(here, '../images/node/init.sh'), 'init.sh'],
  ])
}

/** bun and the token server's script: bun is one binary linked against glibc alone, unlike Debian's node. */
async function buildTokenServerImage(): Promise<void> {
  if (await imageExists(TOKEN_SERVER_IMAGE)) return
  await buildFromScratch(TOKEN_SERVER_IMAGE, 'token-server', [
    [process.execPath, 'bin/bun'],
    [TOKEN_SERVER, 'token-server.ts'],
  ])
}

async function buildToolboxImage(): Promise<void> {
  if (await imageExists(TOOLBOX_IMAGE)) return
  if (!existsSync(CURL)) throw new Error(`${CURL} not found: apt-get install curl, then run the tests again`)
  await buildFromScratch(TOOLBOX_IMAGE, 'toolbox', [[CURL, 'bin/curl']])
}

async function buildSample(name: Sample): Promise<void> {
  const ref = sampleImage(name)
  if (await imageExists(ref)) return
  const ctx = mkdtempSync(join(tmpdir(), `devreg-sample-${name}-`))
  const lines = ['FROM scratch']
  SAMPLES[name].forEach((size, i) => {
    writeFileSync(join(ctx, `layer${i}`), randomBytes(size))
    lines.push(`COPY layer${i} /layer${i}`)
  })
  lines.push(`LABEL devreg.test.sample=${name}`)
  writeFileSync(join(ctx, 'Dockerfile'), `${lines.join('\n')}\n`)
  await $({ quiet: true })`docker build --quiet --tag ${ref} ${ctx}`
}

export async function prepareImages(): Promise<void> {
  await Promise.all([buildRegistry2Image(), buildRegistry3Image(), buildNodeImage(), buildTokenServerImage(), buildToolboxImage()])
  await Promise.all((Object.keys(SAMPLES) as Sample[]).map(buildSample))
}

if (import.meta.main) {
  if ((await $({ nothrow: true, quiet: true })`docker version --format {{.Server.Version}}`).exitCode !== 0) {
    console.error('no Docker daemon: test images not built (integration tests will be skipped)')
  } else {
    await prepareImages()
    console.error('test images ready')
  }
}
