// The one duration grammar: Go's (distribution's logs, kubectl --timeout) plus days and weeks.
import { describe, expect, test } from 'bun:test'
import { ALL_UNITS, GO_UNITS, parseDuration } from '../../scripts/lib/core/duration.ts'

describe('parseDuration', () => {
  test.each([
    ['45s', 45_000],
    ['90m', 5_400_000],
    ['2h', 7_200_000],
    ['1d', 86_400_000],
    ['2w', 1_209_600_000],
    ['300s', 300_000],
    ['0s', 0],
    // Go's time.Duration.String, as distribution logs http.response.duration.
    ['54.137234ms', 54.137234],
    ['1.5s', 1500],
    ['2m3s', 123_000],
    ['850µs', 0.85],
    ['850μs', 0.85],
    ['850us', 0.85],
    ['120ns', 0.00012],
    ['1h0m0.5s', 3_600_500],
    ['1d12h', 129_600_000],
  ])('%s is %d ms', (text, ms) => expect(parseDuration(text)).toBeCloseTo(ms, 9))

  test.each([[''], ['14'], ['d'], ['s5'], ['-1d'], ['+1s'], ['1.5.3s'], ['2 weeks'], ['14D'], ['1y'], ['5 minutes'], ['1h '], ['soon']])(
    '%j is not a duration',
    (text) => expect(parseDuration(text)).toBeNull(),
  )

  test('a date is not a duration (--since takes both)', () => {
    expect(parseDuration('2025-05-31')).toBeNull()
    expect(parseDuration('2025-05-31T08:00:00Z')).toBeNull()
  })
})

describe('units', () => {
  test("Go's units only: what kubectl --timeout takes", () => {
    expect(parseDuration('5m', GO_UNITS)).toBe(300_000)
    expect(parseDuration('1m30s', GO_UNITS)).toBe(90_000)
    expect(parseDuration('1d', GO_UNITS)).toBeNull()
    expect(parseDuration('2w', GO_UNITS)).toBeNull()
  })
  test('a unit outside the list refuses the whole duration', () => {
    expect(parseDuration('1h30m', ['h'])).toBeNull()
    expect(parseDuration('5ms', ['m', 's'])).toBeNull()
  })
  test('every unit is accepted by default', () => {
    for (const unit of ALL_UNITS) expect(parseDuration(`1${unit}`)).not.toBeNull()
  })
})
