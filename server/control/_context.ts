// What every control API handler gets: the controller, the calling client, the parsed URL, and the controller's
// internals the public `Server` API does not expose (file transfers with their reply metadata, daemon links).
import type { MetricsState } from "../_metrics_state.ts";
import type { Auditor } from "../_audited.ts";
import type { Connection } from "../_connection.ts";
import type { TunnelSocket } from "../_forward_tunnel.ts";
import type { FileHost } from "../files.ts";
import type { Server } from "../server.ts";
import type { Scope } from "./options.ts";
import type { ControlState } from "./_state.ts";

/** The client a request was authenticated as. */
export interface ClientIdentity {
  /** The token's name (`client:<name>` in the audit trail); `"anonymous"` when the API is open. */
  name: string;
  /** The scopes the client holds. */
  scopes: ReadonlySet<Scope>;
}

/** What the server hands the control API when it mounts it. */
export interface ControlHost {
  /** The controller. */
  server: Server;
  /** File transfers (for reply metadata such as a download's size). */
  files: FileHost;
  /** The live link to a daemon, or undefined. */
  connection(id: string): Connection | null;
  /** The audit trail writer. */
  auditor: Auditor;
  /** The metrics counters (API authentication failures are counted there). */
  metrics?: MetricsState;
  /** Open one audited TCP connection to a port on a worker (the tunnel route); absent: no tunnels. */
  tunnel?(id: string, port: number): Promise<TunnelSocket>;
}

/**
 * The context of one control API request, as handlers (and `handleTerminal` in `terminal.ts`) receive it.
 * `client` has been authenticated and holds the route's scope when the handler runs.
 */
export interface ControlContext {
  /** The controller, with its internals. */
  readonly host: ControlHost;
  /** The controller (same as `host.server`). */
  readonly server: Server;
  /** Who is calling. */
  readonly client: ClientIdentity;
  /** The request URL, parsed (on first use). */
  readonly url: URL;
  /** Whether the URL has a query string (known without parsing it). */
  readonly hasQuery: boolean;
  /** The remote address (`host:port`). */
  readonly remote: string;
  /** Aborted when the server closes: long-lived answers (streams, waits, events) end then. */
  readonly closing: AbortSignal;
  /** The control API's shared state (API-spawned processes, event subscribers, limits). */
  readonly state: ControlState;
}

/** Path parameters of a route. */
export interface RouteParams {
  /** `{id}`: a daemon id (validated). */
  id?: string;
  /** `{proc}`: a process id (validated). */
  proc?: string;
}
