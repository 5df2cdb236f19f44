/**
 * Reaching a worker's TCP ports from the controller, without the worker exposing any port: every connection is
 * tunnelled over the daemon's own WebSocket link, one `connect` request per connection, each direction a stream
 * under the link's credit flow control.
 *
 * - {@linkcode Forwarding} (`server.forward(id, remotePort)`): a TCP listener on the controller's machine, like
 *   `ssh -L` or `kubectl port-forward`.
 * - {@linkcode ExposedHttp} (`server.exposeHttp(id, { port })`): a capability URL on the controller's own HTTP
 *   server (`/x/<token>/...`) that reverse-proxies HTTP and WebSocket to the worker's port, until `close()`.
 *
 * @module
 */

/** Options of `Server.forward`. */
export interface ForwardOptions {
  /** Local port to listen on; 0 picks a free one. @default 0 */
  port?: number;
  /** Local address to listen on. @default "127.0.0.1" */
  hostname?: string;
  /** Closes the forwarding when aborted. */
  signal?: AbortSignal;
}

/**
 * A local TCP listener whose connections are tunnelled to a port on a worker. Each accepted connection opens its
 * own tunnel connection to `127.0.0.1:remotePort` on the worker; half-close is carried both ways. While the worker
 * is disconnected, new connections are closed at once; the listener stays and works again once it returns.
 *
 * @example Reach a worker's dev server
 * ```ts ignore
 * await using tunnel = await server.forward("worker-1", 5173);
 * const page = await fetch(`http://${tunnel.hostname}:${tunnel.port}/`);
 * ```
 */
export interface Forwarding extends AsyncDisposable {
  /** The local address it listens on. */
  readonly hostname: string;
  /** The local port it listens on. */
  readonly port: number;
  /** The worker. */
  readonly daemonId: string;
  /** The port on the worker. */
  readonly remotePort: number;
  /** Connections being relayed now. */
  readonly connections: number;
  /** Stop listening and abort the connections being relayed. */
  close(): Promise<void>;
}

/** Options of `Server.exposeHttp`. */
export interface ExposeHttpOptions {
  /** The port of the HTTP server on the worker (on its 127.0.0.1). */
  port: number;
  /**
   * How long the worker's server may take to start its response (its head) to a request; then the client gets
   * `504` and the tunnel connection is closed. It bounds what a request whose client left holds (the controller
   * cannot see the client leave before it answers), as a proxy's read timeout does. Raise it for long polls.
   * @default 60_000
   */
  responseTimeoutMs?: number;
  /** Revokes the URL when aborted. */
  signal?: AbortSignal;
}

/**
 * An HTTP (and WebSocket) server on a worker, reachable at {@linkcode ExposedHttp.url} on the controller's own HTTP
 * server. The URL's path carries an unguessable token (256 random bits): anyone who has the URL can use it, so
 * share it like a password. Relative links resolve under it. A worker that is disconnected is 503 until it
 * returns; a refused or closed port is 502 with the reason; after `close()`, 404.
 *
 * @example Share a worker's notebook
 * ```ts ignore
 * const exposed = await server.exposeHttp("worker-1", { port: 8888 });
 * console.log(exposed.url); // http://127.0.0.1:8765/x/3q2-.../
 * await exposed.close();
 * ```
 */
export interface ExposedHttp extends AsyncDisposable {
  /** The URL, ending with `/`. */
  readonly url: string;
  /** The worker. */
  readonly daemonId: string;
  /** The port on the worker. */
  readonly port: number;
  /** Revoke the URL (404 after) and abort the requests and WebSockets in flight. */
  close(): Promise<void>;
}
