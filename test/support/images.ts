// Builds the images the integration tests share, once, before the test files
// run in parallel: a registry:2 stand-in from Debian's docker-registry (the
// same distribution code) and small sample images of random data.
// Run: bun test/support/images.ts   (just test does it first)
import { randomBytes } from 'node:crypto'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { $ } from 'zx'

export const REGISTRY_IMAGE = 'devreg-test/registry:2'
/** Sample images: name → layer sizes in bytes. */
export const SAMPLES = {
  alpha: [1_500_000, 700_000],
  beta: [900_000],
  gamma: [1_200_000, 300_000],
} as const
export type Sample = keyof typeof SAMPLES
export const sampleImage = (name: Sample) => `devreg-test/sample-${name}:1`

const here = dirname(fileURLToPath(import.meta.url))

async function imageExists(ref: string): Promise<boolean> {
  return (await $({ nothrow: true, quiet: true })`docker image inspect ${ref}`).exitCode === 0
}

async function buildRegistryImage(): Promise<void> {
  if (await imageExists(REGISTRY_IMAGE)) return
  const binary = '/usr/bin/docker-registry'
  if (!existsSync(binary)) {
    // On a machine with internet the real image does as well.
    if ((await $({ nothrow: true, quiet: true })`docker image inspect registry:2`).exitCode === 0) {
      await $`docker tag registry:2 ${REGISTRY_IMAGE}`
      return
    }
    throw new Error(`${binary} not found: apt-get install docker-registry (or docker pull registry:2), then run the tests again`)
  }
  const ctx = mkdtempSync(join(tmpdir(), 'devreg-registry-image-'))
  const rootfs = join(ctx, 'rootfs')
  const put = (from: string, to: string) => {
    mkdirSync(dirname(join(rootfs, to)), { recursive: true })
    copyFileSync(from, join(rootfs, to))
  }
  put(binary, 'bin/registry')
  put('/bin/busybox', 'bin/busybox')
  // The registry binary's libraries, as ldd lists them.
  const ldd = (await $`ldd ${binary}`).stdout
  for (const m of ldd.matchAll(/(\/\S+\.so[^\s]*)/g)) put(m[1], m[1].slice(1))
  put(join(here, '../images/registry/entrypoint.sh'), 'entrypoint.sh')
  put(join(here, '../images/registry/config.yml'), 'etc/docker/registry/config.yml')
  writeFileSync(join(rootfs, 'etc/nsswitch.conf'), 'hosts: files dns\n')
  mkdirSync(join(rootfs, 'tmp'), { mode: 0o1777 })
  mkdirSync(join(rootfs, 'var/lib/registry'), { recursive: true })
  copyFileSync(join(here, '../images/registry/Dockerfile'), join(ctx, 'Dockerfile'))
  await $`chmod 755 ${join(rootfs, 'entrypoint.sh')} ${join(rootfs, 'bin/registry')} ${join(rootfs, 'bin/busybox')}`
  await $`chmod 1777 ${join(rootfs, 'tmp')}`
  await $({ quiet: true })`docker build --quiet --tag ${REGISTRY_IMAGE} ${ctx}`
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
  await buildRegistryImage()
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
