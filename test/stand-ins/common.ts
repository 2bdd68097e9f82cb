// What the kubectl stand-in's parts share: docker for the nodes it finds, and
// refusing, loudly and with exit 1, anything the real tool would not accept or
// the stand-in does not implement.
import { $ } from 'zx'

export function refuse(tool: string, what: string): never {
  process.stderr.write(`${tool} (devreg test stand-in): ${what}\n`)
  process.exit(1)
}

export interface Flag {
  name: string
  short?: string
  /** Takes a value (--name X or --name=X); booleans may be given as --flag=false. */
  value: boolean
  repeat?: boolean
}

/** Parses flags strictly: any flag not in `flags` is refused, as cobra would. */
export function parseFlags(
  tool: string,
  argv: string[],
  flags: Flag[],
): { flags: Record<string, string | string[] | boolean>; args: string[] } {
  const out: Record<string, string | string[] | boolean> = {}
  const args: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('-') || a === '-') {
      args.push(a)
      continue
    }
    const [key, inline] = a.split(/=(.*)/s, 2)
    const f = flags.find((x) => key === `--${x.name}` || (x.short && key === `-${x.short}`))
    if (!f) refuse(tool, `unknown flag: ${key}`)
    let v: string | boolean
    if (f.value) {
      v = inline ?? argv[++i]
      if (v === undefined) refuse(tool, `flag needs an argument: ${key}`)
    } else {
      if (inline !== undefined && inline !== 'true' && inline !== 'false') refuse(tool, `invalid boolean for ${key}: ${inline}`)
      v = inline !== 'false'
    }
    if (f.repeat) out[f.name] = [...((out[f.name] as string[]) ?? []), v as string]
    else out[f.name] = v
  }
  return { flags: out, args }
}

/** Refuses any key of `obj` not in `allowed` (the real tools decode their configs strictly). */
export function strictKeys(tool: string, where: string, obj: unknown, allowed: string[]): Record<string, unknown> {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) refuse(tool, `${where} must be a mapping`)
  for (const k of Object.keys(obj as object)) if (!allowed.includes(k)) refuse(tool, `${where}: unknown field "${k}"`)
  return obj as Record<string, unknown>
}

const q = () => $({ quiet: true })

/** Node containers with a label, as `docker ps -a` sees them. */
export async function containersWith(
  label: string,
): Promise<{ id: string; name: string; state: string; labels: Record<string, string>; image: string }[]> {
  const r = await q()`docker ps -a --filter ${`label=${label}`} --format ${'{{json .}}'}`
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .map((c) => ({
      id: c.ID,
      name: c.Names,
      state: c.State,
      image: c.Image,
      labels: Object.fromEntries(
        String(c.Labels)
          .split(',')
          .map((p: string) => p.split(/=(.*)/s, 2)),
      ),
    }))
}
