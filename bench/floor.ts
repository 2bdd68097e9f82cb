// The floor for a no-op `dev-registry up`: a script that only loads the same
// libraries and asks Docker once what runs. devreg cannot be faster than this.
import 'minimist'
import 'yaml'
import { $ } from 'zx'

await $({ quiet: true })`docker ps --all --no-trunc --format ${'{{json .}}'}`
