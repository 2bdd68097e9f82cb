// The README and docs/ link into each other and into the tree by relative path;
// a page or file that moves must not leave a link behind that goes nowhere.
import { expect, test } from 'bun:test'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'

const ROOT = resolve(import.meta.dir, '../..')
const pages = ['README.md', ...readdirSync(join(ROOT, 'docs')).map((f) => `docs/${f}`)].filter((f) => f.endsWith('.md'))

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
const anchor = (heading: string) =>
  heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-')

/** A page's text outside fenced code blocks, where `#` and `](` mean nothing. */
const prose = (file: string) => readFileSync(file, 'utf8').replace(/^```[\s\S]*?^```/gm, '')

const anchorsOf = (file: string) =>
  new Set(
    prose(file)
      .split('\n')
      .flatMap((line) => /^#+ (.*)/.exec(line)?.slice(1) ?? [])
      .map(anchor),
  )

/** Every relative link target of a page, outside code blocks. */
const linksOf = (file: string) =>
  [...prose(file).matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]).filter((target) => !/^[a-z]+:/.test(target))

test.each(pages)('every relative link in %s reaches a file, and a heading when it names one', (page) => {
  const broken = linksOf(join(ROOT, page)).filter((target) => {
    const [path, fragment] = target.split('#')
    const file = path ? resolve(dirname(join(ROOT, page)), path) : join(ROOT, page)
    if (!existsSync(file)) return true
    return fragment !== undefined && file.endsWith('.md') && !anchorsOf(file).has(fragment)
  })
  expect(broken).toEqual([])
})

test('every page in docs/ is linked from the README', () => {
  const linked = new Set(linksOf(join(ROOT, 'README.md')).map((t) => relative(ROOT, resolve(ROOT, t.split('#')[0]))))
  expect(pages.filter((p) => p.startsWith('docs/') && !linked.has(p))).toEqual([])
})
