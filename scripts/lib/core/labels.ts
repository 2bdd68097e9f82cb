// The labels devreg puts on the Docker objects it owns, and finds them by
// (as kind and k3d find their nodes by theirs).

export const LABEL = {
  managed: 'devreg.managed',
  role: 'devreg.role',
  hash: 'devreg.config-hash',
  credentials: 'devreg.credentials-digest',
  // The label's name predates "domain"; containers made before carry it, so it stays.
  upstreamDomain: 'devreg.upstream-host',
  /** On a helper container that reads or writes a volume through the engine: the volume's name. */
  volumeHelper: 'devreg.volume-helper',
} as const
