// JSON keys renamed when "host" came to mean this machine alone: every --json
// output and the archive's manifest write each old key beside its new name,
// with the same value, until the next release (each command's page in docs/
// says which). Dropping them then is deleting the calls to withOldKeys, and
// `host` in the archive's manifest (carry-export.ts).

/** `value` with each old key of `renamed` (old → new) added, holding the new key's value. */
export function withOldKeys<T extends object, Old extends string>(value: T, renamed: Record<Old, keyof T>): T & Record<Old, T[keyof T]> {
  const olds = Object.entries(renamed).map(([old, now]) => [old, value[now as keyof T]])
  return { ...value, ...Object.fromEntries(olds) }
}
