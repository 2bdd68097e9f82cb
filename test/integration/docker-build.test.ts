// The build wrapper runs a real docker build whose RUN step resolves the
// configured names: one at a fixed buildAddress, one through host-gateway.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { $ } from 'zx'
import { Fixture, integration, runScript } from '../kit/fixture.ts'
import { NODE_IMAGE } from '../kit/images.ts'

integration('docker-build', () => {
  const fx = new Fixture()
  const api = `${fx.prefix}api.test`
  const gateway = `${fx.prefix}gw.test`
  const image = `devreg-test/${fx.prefix}build:1`
  let config: string
  let context: string

  beforeAll(() => {
    config = fx.config({
      hosts: [
        { name: api, address: '10.55.0.1', buildAddress: '10.55.0.1' },
        { name: gateway, address: '127.0.0.1' },
      ],
    })
    context = join(fx.dir, 'build context')
    mkdirSync(context)
    // NAMES arrives as one build argument with a space in it; getent fails the build on a name that does not resolve.
    writeFileSync(
      join(context, 'Dockerfile'),
      `FROM ${NODE_IMAGE}\nARG NAMES\nRUN for n in $NAMES; do getent hosts "$n" || exit 1; done > /resolved\n`,
    )
  })
  afterAll(async () => {
    await $({ quiet: true, nothrow: true })`docker rmi -f ${image}`
    await fx.cleanup()
  })

  test('a RUN step resolves each configured name to its buildAddress, host-gateway being the bridge gateway', async () => {
    const r = await runScript('docker-build', [
      '--config',
      config,
      '--no-cache',
      '--force-rm',
      '-t',
      image,
      '--build-arg',
      `NAMES=${api} ${gateway}`,
      context,
    ])
    if (r.code !== 0) console.error(r.stdout, r.stderr)
    expect(r.code).toBe(0)
    const resolved = (await $({ quiet: true })`docker run --rm --entrypoint cat ${image} /resolved`).stdout
    // host-gateway is the default bridge's gateway; Docker 20.10 leaves it out of
    // the network's IPAM config, so ask a container on that bridge for its route.
    const route = (await $({ quiet: true })`docker run --rm --entrypoint ip ${NODE_IMAGE} route`).stdout
    const bridge = /^default via (\S+)/m.exec(route)?.[1] ?? `no default route in: ${route}`
    expect(
      resolved
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split(/\s+/).slice(0, 2)),
    ).toEqual([
      ['10.55.0.1', api],
      [bridge, gateway],
    ])
    expect(r.stderr).toContain(`${gateway} is 127.0.0.1 on this machine, but host-gateway in builds`)
  })

  test("docker build's failure is the wrapper's, with docker's own message", async () => {
    writeFileSync(join(context, 'Failing.Dockerfile'), `FROM ${NODE_IMAGE}\nRUN exit 3\n`)
    // --force-rm: the legacy builder keeps a failed step's container otherwise.
    const r = await runScript('docker-build', ['--config', config, '--force-rm', '-f', join(context, 'Failing.Dockerfile'), context])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('returned a non-zero code: 3')
  })
})
