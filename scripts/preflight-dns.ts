#!/usr/bin/env -S npx tsx
// Check that every configured name resolves and answers where devreg needs it:
// on this machine, in a container on the cluster network and in each node.
// With --fix-hosts, add the missing `hosts` entries to /etc/hosts instead.
import { isMain, openScript, runMain, runnerFor } from './lib/core/cli.ts'
import { type Config, loadConfig } from './lib/core/config.ts'
import type { Runner } from './lib/core/exec.ts'
import { EXIT, log, UserError } from './lib/core/log.ts'
import {
  fixHostsFile,
  HOSTS_FILE,
  parseHostsFile,
  readHostsFile,
  shadowedRegistries,
  unifiedDiff,
  writeHostsFile,
} from './lib/machine/etc-hosts.ts'
import { observe, selectTargets } from './lib/machine/preflight.ts'
import { evaluate, renderReport, summarize } from './lib/machine/preflight-verdicts.ts'

const USAGE = `Usage: preflight-dns [NAME...] [options]

Checks every configured name where devreg needs it: the hosts entries, the
registries and the registry domains nodes pull from. On this machine, in a
short-lived container on the cluster network and in each node of the cluster:
names resolve to the expected address, registries answer GET /v2/, and every
node has exactly the mirror configuration dev-up writes. Prints a table and
the fix for each failure. NAME limits the checks to those names. Whether
pulls really take those routes is \`verify\`'s question (\`just verify\`).

Options:
  --config PATH       read this config instead of config/devreg.yaml [default: $DEVREG_CONFIG]
  --json              print every check as JSON
  --fix-hosts         add the config's missing hosts entries to the hosts file,
                      between devreg's marker lines, instead of checking;
                      without permission only the write runs with sudo
  --hosts-file PATH   the hosts file to read and fix [default: /etc/hosts]
  --dry-run           with --fix-hosts: print the change as a diff, write nothing
  --verbose, -v       echo every command
  --help, -h          show this help

Exit codes: 0 every check passed (warnings allowed), 1 a check failed,
2 a usage or config error.

Examples:
  preflight-dns
  preflight-dns registry.dev.local kind-registry --json
  preflight-dns --fix-hosts --dry-run
  preflight-dns --fix-hosts --hosts-file /tmp/hosts`

interface Options {
  names: string[]
  configPath?: string
  json: boolean
  fixHosts: boolean
  hostsFile: string
}

export async function main(argv = process.argv.slice(2)): Promise<number> {
  const args = openScript(
    argv,
    {
      string: ['config', 'hosts-file'],
      boolean: ['json', 'fix-hosts', 'dry-run', 'verbose', 'help'],
      alias: { v: 'verbose', h: 'help' },
    },
    USAGE,
    Number.POSITIVE_INFINITY,
  )
  if (!args) return 0
  const run = runnerFor(args)
  const opts: Options = {
    names: args._.map(String),
    configPath: args.config,
    json: args.json,
    fixHosts: args['fix-hosts'],
    hostsFile: args['hosts-file'] ?? HOSTS_FILE,
  }
  if (run.dryRun && !opts.fixHosts) throw new UserError('--dry-run goes with --fix-hosts (the checks change nothing)', EXIT.usage)
  if (opts.fixHosts && opts.names.length)
    throw new UserError(`--fix-hosts writes every hosts entry of the config and takes no names (got ${opts.names.join(', ')})`, EXIT.usage)
  if (args['hosts-file'] === '') throw new UserError('--hosts-file needs a path', EXIT.usage)

  const config = loadConfig({ configPath: opts.configPath, env: run.env })
  return opts.fixHosts ? fixHosts(run, config, opts) : check(run, config, opts)
}

async function check(run: Runner, config: Config, opts: Options): Promise<number> {
  const sel = selectTargets(config, opts.names)
  // The default /etc/hosts may be missing (some containers); a file named on the command line may not.
  const text = await readHostsFile(run, opts.hostsFile, opts.hostsFile === HOSTS_FILE)
  const checks = evaluate(config, sel, await observe(run, config, sel, { path: opts.hostsFile, text }))
  const counts = summarize(checks)
  if (opts.json) log.out(JSON.stringify({ ok: counts.fail === 0, summary: counts, checks }, null, 2))
  else log.out(renderReport(checks))
  if (!counts.fail) return 0
  const failed = [...new Set(checks.filter((c) => c.status === 'fail').map((c) => `${c.check} ${c.subject}`))]
  const named = failed.length > 4 ? `${failed.slice(0, 3).join(', ')} and ${failed.length - 3} more` : failed.join(', ')
  log.error(`${counts.fail} of ${checks.length} checks failed (${named}); the report gives the fix for each`)
  return 1
}

async function fixHosts(run: Runner, config: Config, opts: Options): Promise<number> {
  const path = opts.hostsFile
  const before = await readHostsFile(run, path)
  const fix = fixHostsFile(before, config.hosts, path)
  const shadows = shadowedRegistries(parseHostsFile(before))
  for (const s of shadows)
    log.warn(`${path} line ${s.line} maps ${s.name} to ${s.address}: pulls from ${s.name} on this machine go there and fail; remove it`)
  for (const c of fix.conflicts)
    log.error(
      `${path} line ${c.line} maps ${c.name} to ${c.address}, the config says ${c.expected}: change that line (devreg edits only its own block)`,
    )
  const changed = fix.text !== before
  const written = changed && !run.dryRun
  if (written) await writeHostsFile(run, path, fix.text)
  if (opts.json)
    log.out(JSON.stringify({ path, changed, written, added: fix.added, removed: fix.removed, conflicts: fix.conflicts, shadows }, null, 2))
  else if (run.dryRun) log.out(changed ? unifiedDiff(path, before, fix.text) : `# ${path}: nothing to change`)
  if (written) log.ok(`${path}: ${[...fix.added.map((l) => `added ${l}`), ...fix.removed.map((l) => `removed ${l}`)].join(', ')}`)
  else if (!changed) log.info(config.hosts.length ? `${path}: every hosts entry is already there` : `${path}: the config lists no hosts`)
  return fix.conflicts.length ? 1 : 0
}

if (isMain(import.meta.url)) await runMain(main)
