// One line of a distribution log, as logrus writes it in 2.8 and 3 alike: the
// text formatter's key=value pairs (a value with spaces Go-quoted) or the JSON
// formatter's object. verify reads its probes' requests from these, report a
// cache's requests and stores.

const FIELD = /([\w.]+)=("(?:[^"\\]|\\.)*"|\S*)/g

/** The fields of one log line, each value a string; {} for a line that is neither form. */
export function logFields(line: string): Record<string, string> {
  if (line.startsWith('{')) {
    try {
      return Object.fromEntries(Object.entries(JSON.parse(line) as Record<string, unknown>).map(([k, v]) => [k, String(v)]))
    } catch {
      return {}
    }
  }
  const out: Record<string, string> = {}
  for (const [, key, raw] of line.matchAll(FIELD)) out[key] = unquote(raw)
  return out
}

function unquote(raw: string): string {
  if (!raw.startsWith('"')) return raw
  try {
    return JSON.parse(raw) as string
  } catch {
    return raw.slice(1, -1)
  }
}
