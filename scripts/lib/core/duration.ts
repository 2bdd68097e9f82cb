// Durations, the one way devreg reads them: Go's form (time.ParseDuration, as
// distribution logs them and kubectl --timeout takes them: 1.5s, 2m3s, 850µs)
// plus days and weeks for ages (14d, 2w).

/** Milliseconds in one of each unit; µ (micro sign) and μ (Greek mu) both spell micro, as in Go. */
const UNIT_MS = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
}

export type DurationUnit = keyof typeof UNIT_MS

/** The units Go's time.ParseDuration accepts: what a duration handed to kubectl may use. */
export const GO_UNITS: readonly DurationUnit[] = ['ns', 'us', 'µs', 'μs', 'ms', 's', 'm', 'h']
/** Go's units, then days and weeks. */
export const ALL_UNITS: readonly DurationUnit[] = [...GO_UNITS, 'd', 'w']

/**
 * Milliseconds in `text`, one or more number-unit pairs (45m, 1.5s, 1h0m0.5s,
 * 14d); null when it is not such a duration or uses a unit outside `units`.
 */
export function parseDuration(text: string, units: readonly DurationUnit[] = ALL_UNITS): number | null {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)([^\d.]+)/g)]
  if (!parts.length || parts.map((p) => p[0]).join('') !== text) return null
  let ms = 0
  for (const [, n, unit] of parts) {
    if (!units.includes(unit as DurationUnit)) return null
    ms += Number(n) * UNIT_MS[unit as DurationUnit]
  }
  return ms
}
