// What templates/observe-node.sh prints in a node, built from its parts, for
// fake runners to answer a node's one exec with (scripts/lib/nodes.ts parses it).

export interface NodeOutput {
  /** HOST directory (certs.d/HOST) → its hosts.toml. */
  hosts?: Map<string, string> | [string, string][]
  /** Path → content. */
  files?: Record<string, string>
  containerd?: { version: string; config: string }
  /** containerd's proxy variables. */
  env?: Record<string, string>
  /** The node's clock before the pulls. */
  since?: string
  /** Reference → exit code and crictl's line. */
  pulls?: Record<string, { rc: number; out: string }>
}

/** containerd 2.3.4's version line and a dump whose CRI registry reads `configPath`. */
export const containerd23 = (configPath: string) => ({
  version: 'containerd github.com/containerd/containerd/v2 v2.3.4 5d56f00ef1de',
  config: `version = 4\n\n[plugins]\n  [plugins.'io.containerd.cri.v1.images']\n    [plugins.'io.containerd.cri.v1.images'.registry]\n      config_path = '${configPath}'\n`,
})

export function nodeOutput(o: NodeOutput): string {
  return [
    ...[...(o.hosts ?? [])].map(([dir, content]) => `\x1ehosts ${dir}\n${content}`),
    ...Object.entries(o.files ?? {}).map(([path, content]) => `\x1efile ${path}\n${content}`),
    ...(o.since ? [`\x1esince ${o.since}\n`] : []),
    ...Object.entries(o.pulls ?? {}).map(([ref, p]) => `\x1epull ${p.rc} ${ref} ${p.out}\n`),
    ...(o.containerd ? [`\x1econtainerd-version\n${o.containerd.version}\n`, `\x1econtainerd-config\n${o.containerd.config}\n`] : []),
    ...(o.env
      ? [
          `\x1eenv\n${Object.entries(o.env)
            .map(([k, v]) => `${k}=${v}\n`)
            .join('')}`,
        ]
      : []),
  ].join('')
}
