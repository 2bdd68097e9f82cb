#!/usr/bin/env -S npx tsx
// Start the local push registry and one pull-through cache per configured
// upstream. Idempotent: containers that match the config are left alone.
import { isMain, openScript, run } from './lib/cli.ts'
import { type Config, loadConfig } from './lib/config.ts'
import * as docker from './lib/docker.ts'
import { settings } from './lib/exec.ts'
import { log, table, UserError } from './lib/log.ts'
import { ensureRegistries, removeRegistries } from './lib/registries.ts'
import { LABEL, registryContainer } from './lib/render.ts'

const USAGE = `Usage: dev-registry [COMMAND] [options]

Commands:
  up              ensure the local registry and every cache (default)
  status          show each registry: state, mode, port, whether it matches the config
  stop            stop the registries (containers and data stay)
  rm              remove the registry containers; volumes (pushed and cached images) stay
  rm --purge      also delete their volumes, after listing them and asking
  adopt NAME      copy the images of a registry container devreg did not create
                  (e.g. an old kind-registry) into devreg's volume, then replace it

Options:
  --config PATH   read this config instead of config/devreg.yaml [default: $DEVREG_CONFIG]
  --dry-run       print the docker commands instead of running them
  --json          status as JSON
  --purge         with rm: delete the volumes too
  --yes, -y       do not ask before deleting
  --verbose, -v   echo every command
  --help, -h      show this help

Examples:
  dev-registry                       # bring up kind-registry and the caches
  dev-registry status --json
  dev-registry adopt kind-registry   # take over an existing registry without losing its images
  dev-registry rm --purge --dry-run`

interface Options {
  command: 'up' | 'status' | 'stop' | 'rm' | 'adopt'
  target: string | null
  configPath?: string
  json: boolean
  purge: boolean
  yes: boolean
}

export async function main(argv = process.argv.slice(2)): Promise<number> {
  const args = openScript(
    argv,
    {
      string: ['config'],
      boolean: ['dry-run', 'json', 'purge', 'yes', 'verbose', 'help'],
      alias: { y: 'yes', v: 'verbose', h: 'help' },
    },
    USAGE,
    2,
  )
  if (!args) return 0
  const [command = 'up', target = null, ...extra] = args._.map(String)
  if (!['up', 'status', 'stop', 'rm', 'adopt'].includes(command)) throw new UserError(`unknown command ${command}\n\n${USAGE}`, 2)
  if (command === 'adopt' && !target)
    throw new UserError('adopt needs the name of the container to adopt, e.g. dev-registry adopt kind-registry', 2)
  if (extra.length || (target && command !== 'adopt')) throw new UserError(`unexpected argument ${extra[0] ?? target}\n\n${USAGE}`, 2)
  if (args.purge && command !== 'rm') throw new UserError('--purge goes with rm', 2)
  const opts: Options = {
    command: command as Options['command'],
    target,
    configPath: args.config,
    json: args.json,
    purge: args.purge,
    yes: args.yes,
  }

  // 1. The config: a bad one stops here, before any docker command.
  const config = loadConfig({ configPath: opts.configPath })

  switch (opts.command) {
    case 'up': {
      const { changed } = await ensureRegistries(config)
      if (!changed && !settings.dryRun) log.info('nothing to do: every registry matches the config')
      return 0
    }
    case 'status':
      return status(config, opts.json)
    case 'stop':
      return stop(config)
    case 'rm':
      return (await removeRegistries(config, { purge: opts.purge, yes: opts.yes, roles: ['local', 'cache'] })) ? 0 : 1
    case 'adopt':
      return adopt(config, opts.target as string)
  }
}

async function owned(config: Config) {
  const containers = await docker.listContainers()
  return config.registries.map((r) => ({ registry: r, container: containers.find((c) => c.name === r.name) ?? null }))
}

async function status(config: Config, json: boolean): Promise<number> {
  const containers = await docker.listContainers()
  const configured = new Set(config.registries.map((r) => r.name))
  const rows = await Promise.all(
    config.registries.map(async (r) => {
      const c = containers.find((x) => x.name === r.name) ?? null
      const ownedByUs = c ? docker.isOwned(c) : false
      const running = c?.state === 'running'
      const mode =
        r.role === 'local'
          ? 'push'
          : running && ownedByUs
            ? ((await docker.readFileIn(r.name, '/tmp/devreg-mode'))?.trim() ?? 'unknown')
            : null
      return {
        name: r.name,
        role: r.role,
        host: r.host,
        upstream: r.upstream,
        address: `${r.bind}:${r.port}`,
        port: r.port,
        state: !c ? 'missing' : ownedByUs ? c.state : 'not devreg’s',
        mode,
        volume: r.volume,
        matchesConfig: ownedByUs && c?.labels[LABEL.hash] === registryContainer(r).hash,
      }
    }),
  )
  const strays = containers.filter((c) => docker.isOwned(c) && c.labels[LABEL.role] && !configured.has(c.name))
  if (json) {
    log.out(JSON.stringify({ registries: rows, notInConfig: strays.map((c) => ({ name: c.name, state: c.state })) }, null, 2))
    return 0
  }
  const modeText = (m: string | null) => (m === 'offline' ? 'offline (read-only, upstream unreachable)' : (m ?? '-'))
  log.out(
    table(
      ['NAME', 'ROLE', 'ADDRESS', 'STATE', 'MODE', 'MATCHES CONFIG', 'UPSTREAM'],
      rows.map((r) => [r.name, r.role, r.address, r.state, modeText(r.mode), r.matchesConfig ? 'yes' : 'no', r.upstream ?? '-']),
    ),
  )
  for (const s of strays)
    log.warn(`${s.name} is devreg's but no longer in the config: \`docker rm -f ${s.name}\` removes it (its volume stays)`)
  const stale = rows.filter((r) => r.state !== 'missing' && r.state !== 'not devreg’s' && !r.matchesConfig)
  if (stale.length) log.info(`run \`dev-registry up\` to recreate ${stale.map((r) => r.name).join(', ')} with the current config`)
  return 0
}

async function stop(config: Config): Promise<number> {
  for (const { registry, container } of await owned(config)) {
    if (container && docker.isOwned(container) && container.state === 'running') {
      await docker.stopContainer(registry.name)
      log.ok(`${registry.name} stopped`)
    }
  }
  return 0
}

async function adopt(config: Config, name: string): Promise<number> {
  if (!(await docker.listContainers()).some((c) => c.name === name))
    throw new UserError(`no container named ${name}: \`docker ps -a\` lists them`, 2)
  const info = await docker.inspect<{ Config: { Env?: string[]; Labels?: Record<string, string> }; State: { Running: boolean } }>(name)
  if (!info) throw new UserError(`no container named ${name}: \`docker ps -a\` lists them`, 2)
  if (info.Config.Labels?.[LABEL.managed] === 'true') throw new UserError(`${name} is already devreg's: nothing to adopt`, 2)
  // A proxy-mode registry becomes the cache of its upstream; anything else the local registry.
  const remote = info.Config.Env?.find((e) => e.startsWith('REGISTRY_PROXY_REMOTEURL='))
    ?.split('=')[1]
    ?.replace(/\/+$/, '')
  const target = remote
    ? config.registries.find((r) => r.role === 'cache' && r.upstream === remote)
    : config.registries.find((r) => r.role === 'local')
  if (!target)
    throw new UserError(
      `${name} is a cache of ${remote}, which no mirror in the config has as upstream: add a mirror with upstream ${remote} first`,
      2,
    )
  const backup = `${name}-adopted-${new Date().toISOString().replace(/\D/g, '').slice(0, 14)}`

  // 1. Stop it so its data is consistent, and keep Docker from restarting it.
  if (info.State.Running) await docker.stopContainer(name)
  await docker.disableRestart(name)
  // 2. Copy its /var/lib/registry (volume or container filesystem) into devreg's volume.
  await docker.ensureVolume(target.volume)
  await docker.copyRegistryData(name, target.volume, target.image)
  // 3. Keep the old container, renamed and stopped, until the user removes it.
  await docker.renameContainer(name, backup)
  log.ok(`copied ${name}'s images into volume ${target.volume}; the old container is kept, stopped, as ${backup}`)
  // 4. Bring up devreg's registries, the adopted one included.
  await ensureRegistries(config)
  log.info(`when you have checked your images, remove the old container: docker rm ${backup}`)
  return 0
}

if (isMain(import.meta.url)) await run(main)
