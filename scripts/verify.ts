#!/usr/bin/env -S npx tsx
// Prove that every node pulls every registry domain through the registry its
// route starts with: one probe pull per node × domain through the node's CRI
// image service, judged by what the registries logged. dev-up's last phase.

import { configuredCluster } from './lib/cluster/providers/index.ts'
import { verify } from './lib/cluster/verify.ts'
import { renderMatrix, verifyJson } from './lib/cluster/verify-verdicts.ts'
import { isMain, openScript, runMain, runnerFor } from './lib/core/cli.ts'
import { loadConfig } from './lib/core/config.ts'
import * as docker from './lib/core/docker.ts'
import { log, UserError } from './lib/core/log.ts'

const USAGE = `Usage: verify [options]

For every node of the cluster and every registry domain devreg routes (the
local registry under each of its names, each cache's upstream domain, each
alias), pulls DOMAIN/devreg-probe/verify@sha256:<digest> with \`crictl pull\`
in the node, the kubelet's own path. The digest is a tiny image devreg puts
in the local registry and every cache first, so a cache answers from its own
storage and never asks its upstream; a probe passes when the first registry
of that domain's route logged the request for that domain from that node.
Prints a node × domain matrix and a fix for each failure.

Options:
  --config PATH   read this config instead of config/devreg.yaml [default: $DEVREG_CONFIG]
  --json          print every probe as JSON
  --verbose, -v   echo every command
  --help, -h      show this help

Exit codes: 0 every probe passed, 1 a probe failed or there is no cluster,
2 a usage or config error.

Examples:
  verify
  verify --json --config config/k3d.yaml`

export async function main(argv = process.argv.slice(2)): Promise<number> {
  const args = openScript(argv, { string: ['config'], boolean: ['json', 'verbose', 'help'], alias: { v: 'verbose', h: 'help' } }, USAGE)
  if (!args) return 0
  const run = runnerFor(args)
  const config = loadConfig({ configPath: args.config, env: run.env })
  const { provider, name } = config.cluster
  const containers = await docker.listContainers(run)
  if (!configuredCluster(config, containers)) throw new UserError(`no ${provider} cluster ${name} runs: \`just dev-up\` creates it`)
  const result = await verify(run, config, { containers })
  if (args.json) log.out(JSON.stringify(verifyJson(result), null, 2))
  else log.out(renderMatrix(result))
  if (result.ok) return 0
  log.error(`${result.summary.fail} of ${result.probes.length} probes did not reach their first registry; the fix for each is above`)
  return 1
}

if (isMain(import.meta.url)) await runMain(main)
