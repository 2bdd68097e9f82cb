#!/usr/bin/env -S npx tsx
// Run `docker build` with every argument passed through unchanged, plus one
// --add-host per entry of the config's hosts, so ad-hoc builds resolve the same names as
// the cluster.
import { isMain, openScript, runMain, runnerFor } from './lib/core/cli.ts'
import { type Config, loadConfig } from './lib/core/config.ts'
import { createRunner, ProgramNotFound } from './lib/core/exec.ts'
import { EXIT, log, UserError } from './lib/core/log.ts'
import { isLoopback } from './lib/machine/local-addresses.ts'

const USAGE = `Usage: docker-build [options] [DOCKER BUILD ARGUMENTS...]

Runs \`docker build\` with the arguments given, unchanged, adding
\`--add-host NAME:ADDRESS\` for each entry of hosts in the config (ADDRESS is
its buildAddress, default host-gateway: this machine as seen from the build).
A name you map yourself with --add-host is left to you. Everything after --
goes to docker build uninspected.

Options:
  --config PATH   read this config instead of config/devreg.yaml [default: $DEVREG_CONFIG]
  --dry-run       print the docker build command instead of running it
  --verbose, -v   echo the command
  --help, -h      show this help (docker build --help shows docker's)

Examples:
  docker-build -t localhost:5001/app:dev .
  docker-build --dry-run --build-arg 'GREETING=hello world' -f Dockerfile.dev .`

/** Whether each `docker build` flag takes a value, by name (--tag) and by letter (-t). */
export type BuildFlags = Map<string, boolean>

/**
 * The flags of `docker build --help` (cobra's layout, BuildKit's or the
 * legacy builder's): a type word after the name means it takes a value.
 */
export function parseBuildFlags(help: string): BuildFlags {
  const flags: BuildFlags = new Map()
  for (const m of help.matchAll(/^\s+(?:-(\w), )?--([\w-]+)(?: (\w+))?(?:\s{2,}|$)/gm)) {
    const takesValue = m[3] !== undefined
    flags.set(`--${m[2]}`, takesValue)
    if (m[1]) flags.set(`-${m[1]}`, takesValue)
  }
  return flags
}

const OWN_VALUE = ['--config']
const OWN_BOOLEAN = ['--dry-run', '--verbose', '-v', '--help', '-h']

/**
 * Separates this script's options from docker build's arguments, which keep
 * their order. Knowing which docker flags take a value keeps a value such as
 * `--label --verbose` from being read as an option; an unknown flag is a
 * usage error before anything runs. Without `flags` (no docker CLI) anything
 * unknown is passed on.
 */
export function splitArgs(argv: string[], flags: BuildFlags | null): { own: string[]; build: string[] } {
  const own: string[] = []
  const build: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const name = arg.split('=')[0]
    if (arg === '--') {
      build.push(...argv.slice(i))
      break
    }
    if (OWN_BOOLEAN.includes(arg)) own.push(arg)
    else if (OWN_VALUE.includes(name)) own.push(...(arg.includes('=') ? [arg] : [arg, argv[++i] ?? '']))
    else if (!arg.startsWith('-') || arg === '-' || !flags) build.push(arg)
    else if (arg.startsWith('--')) {
      if (!flags.has(name)) throw unknownFlag(name)
      build.push(arg)
      if (flags.get(name) && !arg.includes('=') && i + 1 < argv.length) build.push(argv[++i])
    } else {
      // A cluster of letters (-qt app): each a known flag; one that takes a value ends it.
      build.push(arg)
      for (let j = 1; j < arg.length; j++) {
        const letter = `-${arg[j]}`
        if (!flags.has(letter)) throw unknownFlag(letter)
        if (flags.get(letter)) {
          if (j === arg.length - 1 && i + 1 < argv.length) build.push(argv[++i])
          break
        }
      }
    }
  }
  return { own, build }
}

function unknownFlag(flag: string): UserError {
  return new UserError(
    `unknown option ${flag}: neither docker build (see \`docker build --help\`) nor docker-build takes it\n\n${USAGE}`,
    2,
  )
}

/** The names mapped by --add-host among docker build's arguments. */
function mappedNames(build: string[]): Set<string> {
  const names = new Set<string>()
  for (let i = 0; i < build.length && build[i] !== '--'; i++) {
    const value =
      build[i] === '--add-host' ? build[i + 1] : build[i].startsWith('--add-host=') ? build[i].slice('--add-host='.length) : null
    if (value) names.add(value.split(/[:=]/)[0])
  }
  return names
}

/** `docker build` with one --add-host per hosts entry the arguments do not map, then the arguments as given. */
export function buildCommand(hosts: Config['hosts'], build: string[]): string[] {
  const mapped = mappedNames(build)
  const added = hosts.filter((h) => !mapped.has(h.name)).flatMap((h) => ['--add-host', `${h.name}:${h.buildAddress}`])
  return ['docker', 'build', ...added, ...build]
}

/**
 * host-gateway is this machine's address on the Docker bridge: what listens
 * only on 127.0.0.1 (devreg's registries, by default) is not there.
 */
export function loopbackWarnings(config: Config): string[] {
  const published = config.registries.filter((r) => isLoopback(r.bind)).map((r) => `${r.name} on ${r.bind}:${r.port}`)
  return config.hosts
    .filter((h) => h.buildAddress === 'host-gateway' && isLoopback(h.address))
    .map(
      (h) =>
        `${h.name} is ${h.address} on this machine, but host-gateway in builds: a service published only on ${h.address}` +
        `${published.length ? ` (such as ${published.join(', ')})` : ''} does not answer there. ` +
        `Publish it on the bridge as well, or set buildAddress of ${h.name} to an address the build reaches.`,
    )
}

export async function main(argv = process.argv.slice(2)): Promise<number> {
  // Asked before this script's own flags are known (they are told apart by it), so never echoed.
  const help = await createRunner().probe(['docker', 'build', '--help'])
  const { own, build } = splitArgs(argv, help.ok ? parseBuildFlags(help.stdout) : null)
  const args = openScript(own, { string: ['config'], boolean: ['dry-run', 'verbose', 'help'], alias: { v: 'verbose', h: 'help' } }, USAGE)
  if (!args) return 0
  const run = runnerFor(args)
  if (args.config === '') throw new UserError('--config needs a path', EXIT.usage)
  const config = loadConfig({ configPath: args.config, env: run.env })
  if (help.missing) throw new ProgramNotFound('docker')
  for (const warning of loopbackWarnings(config)) log.warn(warning)
  return (await run.passthrough(buildCommand(config.hosts, build))) === 0 ? 0 : 1
}

if (isMain(import.meta.url)) await runMain(main)
