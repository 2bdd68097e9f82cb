// The Docker engine's daemon.json, edited as text: devreg adds its cache to
// registry-mirrors and takes exactly that away again, and every byte it did
// not add stays as it was (the user's indentation, key order, line endings).
// jsonc-parser (the parser of VS Code's settings) tells where each key and
// value is; the edits are spliced in at those offsets.
import { applyEdits, type Edit, type Node, parseTree } from 'jsonc-parser'
import { EXIT, UserError } from '../core/log.ts'

export const DAEMON_JSON = '/etc/docker/daemon.json'
const KEY = 'registry-mirrors'

/** The document as dockerd reads it (plain JSON, no comments): an object, or a usage error naming the file. */
function parseDaemonJson(text: string, path: string): Record<string, unknown> {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    throw new UserError(`${path} is not valid JSON (${(err as Error).message}): fix it first; devreg edits only valid files`, EXIT.usage)
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new UserError(`${path} is not a JSON object: fix it first`, EXIT.usage)
  return doc as Record<string, unknown>
}

/** The top-level members (property nodes: key and value), and the registry-mirrors one dockerd uses (the last). */
function members(text: string): { root: Node; properties: Node[]; mirrors: Node | undefined } {
  const root = parseTree(text) as Node
  const properties = root.children ?? []
  const mirrors = properties.filter((p) => p.children?.[0].value === KEY).at(-1)
  return { root, properties, mirrors }
}

const end = (n: Node) => n.offset + n.length
const valueNode = (property: Node) => property.children?.[1] as Node

/** The registry-mirrors a daemon.json lists. */
export function daemonJsonMirrors(text: string | null, path = DAEMON_JSON): string[] {
  if (text === null || !text.trim()) return []
  const m = parseDaemonJson(text, path)[KEY]
  return Array.isArray(m) ? m.filter((x): x is string => typeof x === 'string') : []
}

/** The whitespace a new line starts with, taken from the text between an opening bracket and its first child. */
function leadOf(between: string): string | null {
  return between.includes('\n') ? between.slice(between.lastIndexOf('\n') + 1) : null
}

/**
 * daemon.json with `url` first in registry-mirrors (tried before any mirror
 * already there), in the file's own indentation and line endings. An absent
 * or empty file becomes a new one.
 */
export function addMirror(text: string, url: string, path = DAEMON_JSON): string {
  const item = JSON.stringify(url)
  if (!text.trim()) return `{\n  "${KEY}": [${item}]\n}\n`
  parseDaemonJson(text, path)
  const nl = text.includes('\r\n') ? '\r\n' : '\n'
  const { root, properties, mirrors } = members(text)
  const edit = mirrors ? prependItem(text, valueNode(mirrors), item, nl, path) : appendMember(text, root, properties, item, nl)
  return applyEdits(text, [edit])
}

function prependItem(text: string, list: Node, item: string, nl: string, path: string): Edit {
  if (list.type !== 'array') throw new UserError(`${path}: ${KEY} is not a list: fix it first`, EXIT.usage)
  const first = list.children?.[0]
  if (!first) return { offset: list.offset, length: list.length, content: `[${item}]` }
  const lead = leadOf(text.slice(list.offset + 1, first.offset))
  return { offset: first.offset, length: 0, content: item + (lead === null ? ', ' : `,${nl}${lead}`) }
}

function appendMember(text: string, root: Node, properties: Node[], item: string, nl: string): Edit {
  const member = `"${KEY}": [${item}]`
  if (!properties.length) return { offset: root.offset, length: root.length, content: `{${nl}  ${member}${nl}}` }
  const lead = leadOf(text.slice(root.offset + 1, properties[0].offset))
  const last = properties[properties.length - 1]
  return { offset: end(last), length: 0, content: `,${lead === null ? ' ' : nl + lead}${member}` }
}

/** The inverse of addMirror: `url` out of registry-mirrors, and the key out when it was the only entry. */
export function removeMirror(text: string, url: string, path = DAEMON_JSON): string {
  if (!text.trim()) return text
  parseDaemonJson(text, path)
  const { root, properties, mirrors } = members(text)
  const list = mirrors && valueNode(mirrors)
  if (!mirrors || list?.type !== 'array') return text
  const items = list.children ?? []
  const at = items.findIndex((e) => e.value === url)
  if (at < 0) return text
  const cut = (from: number, to: number) => applyEdits(text, [{ offset: from, length: to - from, content: '' }])
  if (items.length > 1) return at < items.length - 1 ? cut(items[at].offset, items[at + 1].offset) : cut(end(items[at - 1]), end(items[at]))
  const i = properties.indexOf(mirrors)
  if (properties.length === 1) return cut(root.offset + 1, end(root) - 1)
  if (i === properties.length - 1) return cut(end(properties[i - 1]), end(mirrors))
  return cut(mirrors.offset, properties[i + 1].offset)
}
