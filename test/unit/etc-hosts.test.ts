// /etc/hosts editing as pure functions: devreg's block, idempotence, every
// other byte kept, shadowed public registries, and the diff --dry-run shows.
import { describe, expect, test } from 'bun:test'
import {
  BEGIN_MARKER,
  END_MARKER,
  fixHostsFile,
  parseHostsFile,
  shadowedRegistries,
  unifiedDiff,
} from '../../scripts/lib/machine/etc-hosts.ts'

const hosts = [
  { name: 'registry.dev.local', address: '127.0.0.1' },
  { name: 'api.dev.local', address: '10.0.0.5' },
]
// Tabs, odd spacing, comments, an entry without a trailing newline: all must survive.
const original =
  '127.0.0.1\tlocalhost\n::1     localhost ip6-localhost   # loopback\n\n# my own entries\n10.1.1.1 intranet\t\tintranet.corp'

describe('fixHostsFile', () => {
  test('adds the missing entries once, in a marked block after every untouched line', () => {
    const fix = fixHostsFile(original, hosts)
    expect(fix.text).toBe(`${original}\n${BEGIN_MARKER}\n127.0.0.1 registry.dev.local\n10.0.0.5 api.dev.local\n${END_MARKER}\n`)
    expect(fix.added).toEqual(['127.0.0.1 registry.dev.local', '10.0.0.5 api.dev.local'])
    expect(fix.text.startsWith(original)).toBe(true)
  })

  test('a second run changes nothing', () => {
    const once = fixHostsFile(original, hosts).text
    const twice = fixHostsFile(once, hosts)
    expect(twice.text).toBe(once)
    expect(twice.added).toEqual([])
    expect(twice.removed).toEqual([])
  })

  test('an entry the file already has outside the block is not added again', () => {
    const fix = fixHostsFile('10.0.0.5 api.dev.local\n', hosts)
    expect(fix.text).toBe(`10.0.0.5 api.dev.local\n${BEGIN_MARKER}\n127.0.0.1 registry.dev.local\n${END_MARKER}\n`)
  })

  test('a name mapped elsewhere by a line devreg did not write is a conflict, left alone', () => {
    const text = '127.0.0.1 localhost\n10.9.9.9 api.dev.local\n'
    const fix = fixHostsFile(text, hosts)
    expect(fix.conflicts).toEqual([{ name: 'api.dev.local', address: '10.9.9.9', line: 2, expected: '10.0.0.5' }])
    expect(fix.text).toBe(`${text}${BEGIN_MARKER}\n127.0.0.1 registry.dev.local\n${END_MARKER}\n`)
  })

  test('the block is rewritten in place when the config changes, and removed when it would be empty', () => {
    const before = `a\n${BEGIN_MARKER}\n127.0.0.1 registry.dev.local\n10.0.0.4 api.dev.local\n${END_MARKER}\nz\n`
    const fix = fixHostsFile(before, hosts)
    expect(fix.text).toBe(`a\n${BEGIN_MARKER}\n127.0.0.1 registry.dev.local\n10.0.0.5 api.dev.local\n${END_MARKER}\nz\n`)
    expect(fix.added).toEqual(['10.0.0.5 api.dev.local'])
    expect(fix.removed).toEqual(['10.0.0.4 api.dev.local'])
    expect(fixHostsFile(before, []).text).toBe('a\nz\n')
  })

  test('with no hosts and no block, nothing changes', () => {
    expect(fixHostsFile(original, []).text).toBe(original)
    expect(fixHostsFile('', []).text).toBe('')
  })

  test('an empty file gets just the block', () => {
    expect(fixHostsFile('', hosts.slice(0, 1)).text).toBe(`${BEGIN_MARKER}\n127.0.0.1 registry.dev.local\n${END_MARKER}\n`)
  })

  test('a begin marker without its end is refused rather than guessed at', () => {
    expect(() => fixHostsFile(`x\n${BEGIN_MARKER}\n1.2.3.4 a\n`, hosts, '/tmp/hosts')).toThrow(
      `/tmp/hosts:2: devreg's block has no "${END_MARKER}" line`,
    )
  })
})

describe('shadowedRegistries', () => {
  const local = (a: string) => a.startsWith('127.') || a === '0.0.0.0' || a === '::1'

  test('a public registry mapped to this machine is reported with its line', () => {
    const entries = parseHostsFile('127.0.0.1 localhost\n127.0.0.1 docker.io registry-1.docker.io\n0.0.0.0 GHCR.io\n')
    expect(shadowedRegistries(entries, local)).toEqual([
      { line: 2, address: '127.0.0.1', name: 'docker.io' },
      { line: 2, address: '127.0.0.1', name: 'registry-1.docker.io' },
      { line: 3, address: '0.0.0.0', name: 'ghcr.io' },
    ])
  })

  test('comments, other addresses and other names are not', () => {
    const entries = parseHostsFile('# 127.0.0.1 docker.io\n10.20.0.1 quay.io\n127.0.0.1 docker.io.example.com\n')
    expect(shadowedRegistries(entries, local)).toEqual([])
  })
})

describe('unifiedDiff', () => {
  test('shows the added block with three lines of context, as diff -u does', () => {
    const before = 'a\nb\nc\nd\ne\n'
    const after = `${before}${BEGIN_MARKER}\n127.0.0.1 r\n${END_MARKER}\n`
    expect(unifiedDiff('/etc/hosts', before, after)).toBe(
      [
        '--- /etc/hosts',
        '+++ /etc/hosts',
        '@@ -3,3 +3,6 @@',
        ' c',
        ' d',
        ' e',
        `+${BEGIN_MARKER}`,
        '+127.0.0.1 r',
        `+${END_MARKER}`,
        '',
      ].join('\n'),
    )
  })

  test('a changed line in the middle', () => {
    expect(unifiedDiff('h', 'a\nb\nc\n', 'a\nB\nc\n')).toBe('--- h\n+++ h\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n')
  })

  test('no change, no diff', () => {
    expect(unifiedDiff('h', 'a\n', 'a\n')).toBe('')
  })
})
