// Carrying a cache to another machine (issue 15): `dev-registry export` of a
// warm cache holding the pulls section's image set, then `dev-registry import`
// of the archive into fresh volumes, against skopeo copying the same images
// one at a time from that cache to a directory and from there into a fresh
// registry. Both must end serving every image under its original manifest
// digest. Runs on the machine's main Docker engine; no bandwidth limit (both
// sides copy between local disks).

import { mkdirSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { $ } from 'zx'
import { createRunner } from '../scripts/lib/core/exec.ts'
import { getManifest, hostUrl, waitForV2 } from '../scripts/lib/registries/distribution.ts'
import { readStorage } from '../scripts/lib/registries/storage.ts'
import { NODE_IMAGE, REGISTRY_IMAGE } from '../test/kit/images.ts'
import type { PushedImage } from '../test/kit/push.ts'
import { servedBlobBytes } from '../test/kit/registry.ts'
import { type BenchContext, freePort, median, type Section, script, seconds, timed, type Workspace } from './harness.ts'
import { MB, NOTE_IMAGES, pushNoteImages, SCALE } from './pulls.ts'

/** Rounds of each side, alternated; the section reports medians. */
const RUNS = 5

/** Waits until `volume` holds every image: its tag on the pushed digest, its manifest and every blob. */
async function waitHolds(volume: string, images: PushedImage[], timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const s = await readStorage(createRunner(), volume, REGISTRY_IMAGE)
    const missing = images.filter(
      (i) =>
        s.repositories.get(i.repo)?.tags.get(i.tag as string)?.digest !== i.digest ||
        !s.blobs.has(i.digest) ||
        !i.blobs.every((b) => s.blobs.has(b.digest) && s.repositories.get(i.repo)?.layers.has(b.digest)),
    )
    if (!missing.length) return
    if (Date.now() > deadline)
      throw new Error(`volume ${volume} lacks ${missing.map((i) => `${i.repo}:${i.tag}`).join(', ')} (tag, manifest or blobs)`)
    await new Promise((r) => setTimeout(r, 500))
  }
}

/** Every image answers on `base` by its tag with the manifest digest it was pushed with. */
async function checkServed(base: string, images: PushedImage[], who: string): Promise<void> {
  for (const i of images) {
    const m = await getManifest(createRunner(), base, i.repo, i.tag as string)
    if (m.digest !== i.digest) throw new Error(`${who} serves ${i.repo}:${i.tag} as ${m.digest}, pushed as ${i.digest}`)
  }
}

/** Bytes under a directory. */
async function duBytes(dir: string): Promise<number> {
  return Number((await $({ quiet: true })`du -sb ${dir}`).stdout.split(/\s/)[0])
}

/** The warm cache both sides copy from. */
interface CarrySetup {
  upstream: string
  cache: { name: string; port: number }
  cacheVolume: string
  cacheUrl: string
  /** Runs `dev-registry` with the section's config. */
  devreg: (...args: string[]) => Promise<string>
  images: PushedImage[]
  imageBytes: number
}

/** One side's times (ms) per round: out of the cache, into fresh storage. */
interface Times {
  out: number[]
  in: number[]
}

export const carry: Section = {
  name: 'carry',
  title: 'Carrying a cache: export and import against skopeo',
  async run({ ws }: BenchContext) {
    const skopeo = (await $({ quiet: true, nothrow: true })`skopeo --version`).stdout.trim()
    if (!skopeo) throw new Error('skopeo is not installed (apt-get install skopeo)')

    // 1. An upstream, devreg's registries, and the pulls section's images warmed into the docker.io cache.
    const setup = await warmCache(ws)

    // 2. Alternately: devreg's export, purge and import; skopeo's copy to a directory and into a fresh registry.
    const ours: Times = { out: [], in: [] }
    const theirs: Times = { out: [], in: [] }
    let archiveBytes = 0
    let dirBytes = 0
    for (let i = 0; i < RUNS; i++) {
      console.error(`  round ${i + 1} of ${RUNS}`)
      archiveBytes = await devregRound(ws, setup, ours)
      dirBytes = await skopeoRound(ws, setup, i, theirs)
    }

    // 3. The report, and issue 24's target for both ways together.
    const markdown = carryMarkdown(setup, skopeo, { ours, theirs, archiveBytes, dirBytes })
    const ratio = median(totals(ours)) / median(totals(theirs))
    const target = 'export + import at most 1.2x skopeo to `dir:` and back'
    return { markdown, checks: [{ target, measured: `${ratio.toFixed(2)}x`, met: ratio <= 1.2 }] }
  },
}

async function warmCache(ws: Workspace): Promise<CarrySetup> {
  const network = await ws.network()
  const ports = { upstream: await freePort(), registry: await freePort(), cache: await freePort() }
  const upstream = await ws.upstream(network, ports.upstream)
  const cache = { name: ws.name('cache-docker-io'), port: ports.cache }
  const cacheVolume = `${cache.name}-data`
  const config = ws.config({
    cluster: { provider: 'kind', name: ws.name('c'), network, nodeImage: NODE_IMAGE },
    registry: { name: ws.name('registry'), port: ports.registry, image: REGISTRY_IMAGE, volume: ws.name('registry-data') },
    mirrors: [{ host: 'docker.io', upstream: `http://${upstream}:5000`, ...cache }],
  })
  const devreg = (...args: string[]) => script('dev-registry', ['--config', config, ...args])
  await devreg()
  const { images, imageBytes } = await pushNoteImages([ports.upstream])
  console.error(`  warming ${images.length} images, ${MB(imageBytes)}, into ${cache.name}`)
  await devreg('warm', ...NOTE_IMAGES.map(([name]) => name))
  await waitHolds(cacheVolume, images)
  return { upstream, cache, cacheVolume, cacheUrl: hostUrl('127.0.0.1', cache.port), devreg, images, imageBytes }
}

/** export, purge, import, start: the times go to `ours`; the archive's size. */
async function devregRound(ws: Workspace, setup: CarrySetup, ours: Times): Promise<number> {
  const { upstream, cache, cacheVolume, cacheUrl, devreg, images } = setup
  const archive = join(ws.dir, 'cache.tar')
  ours.out.push(await timed(() => devreg('export', archive)))
  const archiveBytes = statSync(archive).size
  await devreg('rm', '--purge', '--yes')
  if ((await $({ quiet: true, nothrow: true })`docker volume inspect ${cacheVolume}`).exitCode === 0)
    throw new Error(`rm --purge left volume ${cacheVolume}`)
  const upstreamBefore = await servedBlobBytes(upstream)
  ours.in.push(await timed(() => devreg('import', archive)))
  await waitHolds(cacheVolume, images, 0)
  await devreg()
  await checkServed(cacheUrl, images, cache.name)
  const fetched = (await servedBlobBytes(upstream)) - upstreamBefore
  if (fetched) throw new Error(`the upstream served ${fetched} blob bytes after the import: the cache did not get everything`)
  rmSync(archive)
  return archiveBytes
}

/** skopeo from the cache to a directory, then into a fresh registry: the times go to `theirs`; the directory's size. */
async function skopeoRound(ws: Workspace, { cache, images }: CarrySetup, round: number, theirs: Times): Promise<number> {
  const dir = join(ws.dir, `skopeo-${round}`)
  const plain = ws.name(`plain-${round}`)
  const plainPort = await freePort()
  await $({
    quiet: true,
  })`docker run -d --name ${plain} -v ${`${ws.name(`plain-${round}-data`)}:/var/lib/registry`} -p ${`127.0.0.1:${plainPort}:5000`} ${REGISTRY_IMAGE}`
  const plainUrl = hostUrl('127.0.0.1', plainPort)
  await waitForV2(createRunner(), plainUrl, 30_000)
  const inDir = (image: PushedImage) => join(dir, image.repo, image.tag as string)
  for (const image of images) mkdirSync(join(dir, image.repo), { recursive: true })
  theirs.out.push(
    await timed(() =>
      skopeoCopy(
        images,
        (image) => `docker://127.0.0.1:${cache.port}/${image.repo}:${image.tag}`,
        (image) => `dir:${inDir(image)}`,
      ),
    ),
  )
  const dirBytes = await duBytes(dir)
  theirs.in.push(
    await timed(() =>
      skopeoCopy(
        images,
        (image) => `dir:${inDir(image)}`,
        (image) => `docker://127.0.0.1:${plainPort}/${image.repo}:${image.tag}`,
      ),
    ),
  )
  await checkServed(plainUrl, images, plain)
  rmSync(dir, { recursive: true })
  await $({ quiet: true })`docker rm -f -v ${plain}`
  await $({ quiet: true })`docker volume rm ${ws.name(`plain-${round}-data`)}`
  return dirBytes
}

/** Each image in turn, as a script copying images one at a time would. */
async function skopeoCopy(images: PushedImage[], from: (i: PushedImage) => string, to: (i: PushedImage) => string): Promise<void> {
  for (const image of images) {
    const p = await $({
      quiet: true,
      nothrow: true,
    })`skopeo copy --quiet --preserve-digests --src-tls-verify=false --dest-tls-verify=false ${from(image)} ${to(image)}`
    if (p.exitCode !== 0) throw new Error(`skopeo copy ${from(image)} ${to(image)}: ${p.stderr.trim()}`)
  }
}

/** Each round's out + in. */
const totals = (s: Times) => s.out.map((o, i) => o + s.in[i])

function carryMarkdown(
  { images, imageBytes }: CarrySetup,
  skopeo: string,
  r: { ours: Times; theirs: Times; archiveBytes: number; dirBytes: number },
): string {
  const row = (label: string, a: number[], b: number[]) =>
    `| ${label} | ${seconds(median(a))} | ${seconds(median(b))} | ${(median(a) / median(b)).toFixed(2)}x |`
  const each = (xs: number[]) => xs.map(seconds).join(', ')
  return [
    `The pulls section's ${images.length} images (${MB(imageBytes)}, at ${SCALE} of the note's sizes), warmed into a devreg`,
    'docker.io cache with `dev-registry warm`. **devreg**: `dev-registry export FILE` (every cache, uncompressed tar,',
    `${MB(r.archiveBytes)}), then \`dev-registry rm --purge --yes\` (untimed) and \`dev-registry import FILE\` into fresh volumes`,
    "with the registries down (import checks every blob's digest before anything becomes visible); then `dev-registry`",
    `starts them. **skopeo** (${skopeo}): \`skopeo copy --preserve-digests\` of each image from the same cache to \`dir:\``,
    `(${MB(r.dirBytes)}), then from the directory into a fresh, running distribution registry. Each command under its own`,
    `process (devreg's under Bun), times include start-up. Both ends serve every image by its tag under the digest it`,
    `was pushed with (checked), and the imported cache fetched 0 blob bytes from the upstream. Median of ${RUNS}, alternated.`,
    '',
    '| step | devreg | skopeo | devreg / skopeo |',
    '| --- | ---: | ---: | ---: |',
    row('out: export / copy to a directory', r.ours.out, r.theirs.out),
    row('in: import / copy into a registry', r.ours.in, r.theirs.in),
    row('**both**', totals(r.ours), totals(r.theirs)),
    '',
    `Runs: devreg ${each(totals(r.ours))}; skopeo ${each(totals(r.theirs))}.`,
  ].join('\n')
}
