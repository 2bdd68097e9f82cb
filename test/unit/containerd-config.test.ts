// Which hosts directory a node's CRI pulls read, from real `containerd config
// dump` output of each containerd line (fixtures made with the kind patch
// applied; 2.3's without it, as kindest/base ships its config).
import { expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { CONTAINERD_DEFAULT_CONFIG_PATH, containerdVersion, criConfigPath } from '../../scripts/lib/cluster/nodes.ts'

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

test('containerd 2.3 without config_path or mirrors reads its built-in default, which its dump does not show', () => {
  const text = dump('2.3')
  expect(text).toContain("config_path = ''")
  const v23 = containerdVersion('containerd github.com/containerd/containerd/v2 v2.3.4 ')
  expect(v23).toEqual([2, 3])
  expect(criConfigPath(text, v23)).toBe(CONTAINERD_DEFAULT_CONFIG_PATH)
  // The same empty config_path on 2.1, or with the version unknown, reads nothing.
  expect(criConfigPath(text, containerdVersion('containerd containerd.io 2.1.9'))).toBeNull()
  expect(criConfigPath(text)).toBeNull()
  // Legacy mirrors switch the default off; a config_path of its own wins.
  const mirrors = text.replace(
    "[plugins.'io.containerd.cri.v1.images'.registry]\n      config_path = ''",
    "[plugins.'io.containerd.cri.v1.images'.registry]\n      config_path = ''\n      [plugins.'io.containerd.cri.v1.images'.registry.mirrors.'docker.io']\n        endpoint = ['http://cache:5000']",
  )
  expect(mirrors).not.toBe(text)
  expect(criConfigPath(mirrors, v23)).toBeNull()
  expect(criConfigPath(text.replace("      config_path = ''", "      config_path = '/elsewhere'"), v23)).toBe('/elsewhere')
})
