// What k3d writes into every node for --registry-config: not the file it was
// given but its own re-serialisation of it. k3d v5 reads the file into
// rancher/wharfie's registries.Registry (pkg/config/transform.go, with
// sigs.k8s.io/yaml, which goes through the struct's json tags) and writes it
// back with gopkg.in/yaml.v2 (pkg/client/cluster.go ClusterPrep, goyaml.Marshal
// to /etc/rancher/k3s/registries.yaml). wharfie's tags have no omitempty, so
// every field is written in struct order, nil maps as {} and nil lists as [].
// The unit tests fake k3d's nodes with it; test/e2e/k3d.test.ts checks it
// against what the real k3d writes.

/**
 * The registries.yaml k3d writes for these mirrors (host → endpoints; no
 * configs or rewrites, which devreg never writes). Throws on a string yaml.v2
 * would quote: quoting is not modelled.
 */
export function k3dRegistriesYaml(mirrors: Record<string, string[]>): string {
  const hosts = Object.keys(mirrors).sort(yamlV2Compare)
  const lines = hosts.length ? ['mirrors:'] : ['mirrors: {}']
  for (const host of hosts) {
    // wharfie's Mirror: Endpoints `endpoint`, then Rewrites `rewrite`.
    lines.push(`  ${plain(host)}:`)
    const endpoints = mirrors[host]
    if (endpoints.length) lines.push('    endpoint:', ...endpoints.map((e) => `    - ${plain(e)}`))
    else lines.push('    endpoint: []')
    lines.push('    rewrite: {}')
  }
  // wharfie's Registry: Mirrors, Configs, Auths.
  lines.push('configs: {}', 'auths: {}')
  return `${lines.join('\n')}\n`
}

const isLetter = (c: string) => /\p{L}/u.test(c)
const isDigit = (c: string) => /\p{Nd}/u.test(c)

/**
 * yaml.v2's order of string map keys (gopkg.in/yaml.v2 v2.4.0 sorter.go,
 * keyList.Less): letters by code point, a non-letter before a letter, and runs
 * of digits compared as numbers.
 */
export function yamlV2Less(a: string, b: string): boolean {
  const ar = Array.from(a)
  const br = Array.from(b)
  for (let i = 0; i < ar.length && i < br.length; i++) {
    if (ar[i] === br[i]) continue
    const al = isLetter(ar[i])
    const bl = isLetter(br[i])
    if (al && bl) return ar[i] < br[i]
    if (al || bl) return bl
    let an = 0
    let bn = 0
    if (ar[i] === '0' || br[i] === '0') {
      for (let j = i - 1; j >= 0 && isDigit(ar[j]); j--) {
        if (ar[j] !== '0') {
          an = 1
          bn = 1
          break
        }
      }
    }
    let ai = i
    let bi = i
    for (; ai < ar.length && isDigit(ar[ai]); ai++) an = an * 10 + (ar[ai].codePointAt(0) as number) - 48
    for (; bi < br.length && isDigit(br[bi]); bi++) bn = bn * 10 + (br[bi].codePointAt(0) as number) - 48
    if (an !== bn) return an < bn
    if (ai !== bi) return ai < bi
    return ar[i] < br[i]
  }
  return ar.length < br.length
}

const yamlV2Compare = (a: string, b: string) => (yamlV2Less(a, b) ? -1 : yamlV2Less(b, a) ? 1 : 0)

/**
 * A string as yaml.v2 writes it when it can stay plain: it resolves to no
 * other YAML 1.1 type and has no indicator in it. Anything else is refused.
 */
function plain(s: string): string {
  const otherType =
    /^(y|yes|n|no|on|off|true|false|null|~)$/i.test(s) ||
    /^[-+]?(\.?[0-9][0-9_]*)(\.[0-9_]*)?([eE][-+]?[0-9]+)?$/.test(s) ||
    /^\d{4}-\d\d?-\d\d?/.test(s)
  if (otherType || s.endsWith(':') || !/^[A-Za-z0-9][A-Za-z0-9._:/@%+~=-]*$/.test(s))
    throw new Error(`yaml.v2 would quote ${JSON.stringify(s)}: quoting is not modelled`)
  return s
}
