// The files under templates/: what devreg renders its files from, and the
// shell programs it runs inside containers (`sh -c PROGRAM NAME ARGS...`,
// with values only as arguments), where shellcheck sees them.
import { readFileSync } from 'node:fs'

const TEMPLATES = new URL('../../../templates/', import.meta.url)

/** A template's text; modules read theirs once, when they load. */
export const template = (name: string): string => readFileSync(new URL(name, TEMPLATES), 'utf8')
