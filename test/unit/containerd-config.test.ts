// Which hosts directory a node's CRI pulls read, from real `containerd config
// dump` output of each containerd line (fixtures made with the kind patch applied).
import { expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { criConfigPath } from '../../scripts/lib/nodes.ts'

const dump = (version: string) => readFileSync(join(import.meta.dir, `fixtures/containerd-${version}-config-dump.toml`), 'utf8')

test.each(['2.1', '1.7', '1.6'])('containerd %s: the kind patch shows as CRI config_path', (version) => {
  expect(criConfigPath(dump(version))).toBe('/etc/containerd/certs.d')
})

test('containerd 2.x: the migrated table with single quotes, not the transfer service config_path', () => {
  const text = dump('2.1')
  expect(text).toContain("[plugins.'io.containerd.cri.v1.images'.registry]")
  expect(criConfigPath(text.replace("config_path = '/etc/containerd/certs.d'", "config_path = ''"))).toBeNull()
})

test('a config without the patch, or output that is not TOML, reads no certs.d', () => {
  expect(criConfigPath(dump('1.6').replace('config_path = "/etc/containerd/certs.d"', 'config_path = ""'))).toBeNull()
  expect(criConfigPath('containerd: command not found')).toBeNull()
  expect(criConfigPath('')).toBeNull()
})
