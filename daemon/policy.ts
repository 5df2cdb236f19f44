/**
 * Moved to `daemon/policy/` (see `./policy/mod.ts`). This re-export keeps old import paths working until every
 * importer uses `./policy/mod.ts`; new code imports from there.
 *
 * @module
 */

export {
  ENV_DENY,
  Policy,
  PolicyError,
  type PolicyErrorOptions,
  type PolicyOptions,
  type SpawnRequest,
  type SpawnState,
} from "./policy/mod.ts";
