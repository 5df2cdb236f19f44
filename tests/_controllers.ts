// Test harness: the same test body against both controllers. `server` is the embedded `Server`; `client` is a
// `Client` connected over HTTP to that same Server listening with its control API on (optionally through a
// LinkProxy that can cut the Client's connections). Daemons always dial the Server.
import { Client, type ClientOptions, type Controller, Server, type ServerOptions } from "../mod.ts";
import { TestDaemon } from "./_daemon.ts";
import { LinkProxy } from "./_proxy.ts";

/** Which controller a test runs against. */
export type ControllerKind = "server" | "client";

/** Both, in the order tests are registered. */
export const KINDS: readonly ControllerKind[] = ["server", "client"];

/** What a test gets: the controller under test, and the embedded Server behind it. */
export interface TestController extends AsyncDisposable {
  /** `server` or `client`. */
  name: ControllerKind;
  /** The controller under test. */
  controller: Controller;
  /** The embedded Server (daemons dial `server.url`). */
  server: Server;
  /** The Client, for `client`. */
  client: Client | undefined;
  /** The proxy between the Client and the Server, when asked for. */
  proxy: LinkProxy | undefined;
}

/** Options of {@linkcode openController}. */
export interface TestControllerOptions {
  /** Options of the Server (`port: 0` and the control API are added). */
  server?: ServerOptions;
  /** Options of the Client. */
  client?: ClientOptions;
  /** Put a LinkProxy between the Client and the Server (client only). */
  proxy?: boolean;
}

/** Start a Server with the control API on and, for `client`, a Client connected to it. */
export async function openController(
  name: ControllerKind,
  options: TestControllerOptions = {},
): Promise<TestController> {
  const server = await Server.listen(
    { port: 0, ...options.server, control: true },
  );
  let client: Client | undefined;
  let proxy: LinkProxy | undefined;
  try {
    if (name === "client") {
      proxy = options.proxy ? new LinkProxy(server.port) : undefined;
      client = await Client.connect(`http://127.0.0.1:${proxy?.port ?? server.port}`, {
        ...options.client,
      });
    }
  } catch (error) {
    await proxy?.close();
    await server.close();
    throw error;
  }
  return {
    name,
    controller: client ?? server,
    server,
    client,
    proxy,
    async [Symbol.asyncDispose]() {
      await client?.close();
      await proxy?.close();
      await server.close();
    },
  };
}

/** A controller with real daemons connected to its Server; disposing stops all. */
export interface TestFleet extends TestController {
  /** The daemons, by id. */
  daemons: Map<string, TestDaemon>;
  /** The first daemon. */
  daemon: TestDaemon;
}

/** Start a controller and daemons `ids` (with extra daemon `args`), and wait until they are connected. */
export async function startFleet(
  name: ControllerKind,
  ids: string | string[],
  args: string[] = [],
  options: TestControllerOptions = {},
): Promise<TestFleet> {
  const t = await openController(name, options);
  const daemons = new Map<string, TestDaemon>();
  try {
    for (const id of typeof ids === "string" ? [ids] : ids) {
      daemons.set(id, new TestDaemon({ id, url: t.server.url, args }));
    }
    await Promise.all(
      [...daemons.keys()].map((id) => t.server.waitForDaemon(id, { timeout: 20_000 })),
    );
  } catch (error) {
    await Promise.all([...daemons.values()].map((d) => d.stop()));
    await t[Symbol.asyncDispose]();
    throw error;
  }
  return {
    ...t,
    daemons,
    daemon: daemons.values().next().value!,
    async [Symbol.asyncDispose]() {
      await t.client?.close();
      await Promise.all([...daemons.values()].map((d) => d.stop()));
      await t[Symbol.asyncDispose]();
    },
  };
}

/** Register `fn` as one test per controller kind, named `<kind>: <name>`. */
export function testBoth(
  name: string,
  fn: (kind: ControllerKind, t: Deno.TestContext) => Promise<void>,
  kinds: readonly ControllerKind[] = KINDS,
): void {
  for (const kind of kinds) Deno.test(`${kind}: ${name}`, (t) => fn(kind, t));
}

/**
 * Whether this checkout's control API serves terminals (`GET /api/v1/daemons/{id}/terminal` is not a 501 stub),
 * for tests of the Client's shells to skip with a reason where it does not.
 */
export async function terminalRouteServed(): Promise<boolean> {
  await using server = await Server.listen({ port: 0, control: true });
  const client = Deno.createHttpClient({});
  try {
    const response = await fetch(
      `http://127.0.0.1:${server.port}/api/v1/daemons/probe/terminal`,
      { client },
    );
    await response.body?.cancel();
    return response.status !== 501;
  } finally {
    client.close();
  }
}
