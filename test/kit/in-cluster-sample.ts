// The in-cluster objects of a one-cache config with fixed addresses: what the
// unit tests check field by field and the CLI tests hand to kubectl.
import { parseAllDocuments } from 'yaml'
import { inClusterManifests } from '../../scripts/lib/cluster/render.ts'
import { resolveConfig } from '../../scripts/lib/core/config.ts'

export const config = resolveConfig({ mirrors: [{ host: 'docker.io' }] })
export const [local, cache] = config.registries
export const manifests = inClusterManifests([
  { registry: local, address: '172.18.0.3' },
  { registry: cache, address: '172.18.0.4' },
])
export const docs = parseAllDocuments(manifests).map((d) => d.toJS())
