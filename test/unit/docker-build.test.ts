// The build wrapper's command line: docker build's flags read from its help,
// this script's options told apart from docker's, --add-host per configured
// host, and arguments with spaces and quotes passed on exactly.
import { describe, expect, test } from 'bun:test'
import { $ } from 'zx'
import { buildCommand, loopbackWarnings, parseBuildFlags, splitArgs } from '../../scripts/docker-build.ts'
import { resolveConfig } from '../../scripts/lib/core/config.ts'
import { show } from '../../scripts/lib/core/exec.ts'

// Excerpts of `docker build --help`: the legacy builder (Docker 20.10-28) and BuildKit's buildx.
const LEGACY_HELP = `Usage:  docker build [OPTIONS] PATH | URL | -

Options:
      --add-host list           Add a custom host-to-IP mapping ("host:ip")
      --build-arg list          Set build-time variables
      --cgroup-parent string    Set the parent cgroup for the "RUN"
                                instructions during build
      --compress                Compress the build context using gzip
  -f, --file string             Name of the Dockerfile (Default is
                                "PATH/Dockerfile")
      --label list              Set metadata for an image
      --no-cache                Do not use cache when building the image
  -q, --quiet                   Suppress the build output and print image
                                ID on success
  -t, --tag list                Name and optionally a tag in the
                                "name:tag" format
`
const BUILDX_HELP = `Usage:  docker buildx build [OPTIONS] PATH | URL | -

Options:
      --add-host strings              Add a custom host-to-IP mapping (format: "host:ip")
      --build-arg stringArray         Set build-time variables
  -D, --debug                         Enable debug logging
      --load                          Shorthand for "--output=type=docker"
      --progress string               Set type of progress output ("auto", "quiet", "plain", "tty", "rawjson"). Use plain to show container output (default "auto")
  -t, --tag stringArray               Name and optionally a tag (format: "name:tag")
`
const flags = parseBuildFlags(LEGACY_HELP)
const config = resolveConfig({
  hosts: [
    { name: 'registry.dev.local', address: '127.0.0.1' },
    { name: 'api.dev.local', address: '10.0.0.5', buildAddress: '10.0.0.5' },
  ],
})
const ADD_HOSTS = ['--add-host', 'registry.dev.local:host-gateway', '--add-host', 'api.dev.local:10.0.0.5']
const command = (...argv: string[]) => {
  const { own, build } = splitArgs(argv, flags)
  return { own, command: buildCommand(config.hosts, build) }
}

describe('docker build flags from its help', () => {
  test('legacy builder: value flags by their type word, letters too, wrapped lines ignored', () => {
    expect([...flags]).toEqual([
      ['--add-host', true],
      ['--build-arg', true],
      ['--cgroup-parent', true],
      ['--compress', false],
      ['--file', true],
      ['-f', true],
      ['--label', true],
      ['--no-cache', false],
      ['--quiet', false],
      ['-q', false],
      ['--tag', true],
      ['-t', true],
    ])
  })

  test('buildx', () => {
    const buildx = parseBuildFlags(BUILDX_HELP)
    expect(buildx.get('--load')).toBe(false)
    expect(buildx.get('-D')).toBe(false)
    expect(buildx.get('--progress')).toBe(true)
    expect(buildx.get('-t')).toBe(true)
  })
})

describe('the command', () => {
  test('one --add-host per configured host with its buildAddress, before the arguments as given', () => {
    expect(command('-t', 'app:dev', '.')).toEqual({ own: [], command: ['docker', 'build', ...ADD_HOSTS, '-t', 'app:dev', '.'] })
  })

  test('arguments with spaces and quotes stay single arguments, byte for byte', () => {
    const args = ['--build-arg', 'GREETING=hello world', '--label', `note="it's" a 'test'`, '-f', 'my dir/Dockerfile', 'ctx dir']
    expect(command(...args).command).toEqual(['docker', 'build', ...ADD_HOSTS, ...args])
  })

  test("this script's options are taken out wherever they are; values that look like them are docker's", () => {
    expect(command('--dry-run', '-t', 'app', '--config', 'x.yaml', '--label', '--verbose', '.', '-v')).toEqual({
      own: ['--dry-run', '--config', 'x.yaml', '-v'],
      command: ['docker', 'build', ...ADD_HOSTS, '-t', 'app', '--label', '--verbose', '.'],
    })
    expect(command('--config=x.yaml', '.').own).toEqual(['--config=x.yaml'])
  })

  test('letters may be clustered, and one taking a value takes the next argument', () => {
    expect(command('-qt', 'app', '.').command).toEqual(['docker', 'build', ...ADD_HOSTS, '-qt', 'app', '.'])
    expect(command('-qtapp', '.').command).toEqual(['docker', 'build', ...ADD_HOSTS, '-qtapp', '.'])
  })

  test('everything after -- goes to docker build uninspected', () => {
    expect(command('-t', 'app', '--', '--dry-run').command).toEqual(['docker', 'build', ...ADD_HOSTS, '-t', 'app', '--', '--dry-run'])
  })

  test('a host the arguments map themselves is left to them', () => {
    expect(command('--add-host', 'api.dev.local:192.168.1.9', '--add-host=registry.dev.local:10.1.1.1', '.').command).toEqual([
      'docker',
      'build',
      '--add-host',
      'api.dev.local:192.168.1.9',
      '--add-host=registry.dev.local:10.1.1.1',
      '.',
    ])
  })

  test('an unknown flag is a usage error naming it', () => {
    expect(() => command('--tagg', 'app', '.')).toThrow('unknown option --tagg')
    expect(() => command('-qx', '.')).toThrow('unknown option -x')
  })

  test('the printed command is a shell command that gives back exactly those arguments', async () => {
    const args = ['--build-arg', 'GREETING=hello world', '--label', `note="it's" a 'test' $HOME \\n`, '.']
    const line = show(command(...args).command)
    const printed = await $({ quiet: true })`bash -c ${`printf '%s\\0' ${line.slice('docker build '.length)}`}`
    expect(printed.stdout.split('\0').slice(0, -1)).toEqual([...ADD_HOSTS, ...args])
  })
})

test('a host on 127.0.0.1 reached through host-gateway is warned about, naming the registries published only on loopback', () => {
  const [warning, ...rest] = loopbackWarnings(config)
  expect(rest).toEqual([])
  expect(warning).toStartWith('registry.dev.local is 127.0.0.1 on this machine, but host-gateway in builds')
  expect(warning).toContain('kind-registry on 127.0.0.1:5001')
  expect(loopbackWarnings(resolveConfig({ hosts: [{ name: 'a.local', address: '127.0.0.1', buildAddress: '172.17.0.1' }] }))).toEqual([])
})
