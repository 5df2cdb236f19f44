// A controller with `/metrics` on, for the metrics scrape figure: `deno run -A _metrics_controller.ts ROOT` prints
// its port, then waits for stdin to close and exits. Run in its own process (with a raised descriptor limit) so
// that it can hold as many daemon links as the memory section's controller.
import { loadCheckout } from "./_checkout.ts";

const checkout = await loadCheckout(Deno.args[0]!);
const server = await checkout.mod.Server.listen({
  port: 0,
  handshakeTimeoutMs: 120_000,
  // The scrape figure is about counting, not liveness: a long heartbeat keeps 19,000 links up on a loaded machine.
  heartbeatMs: 60_000,
  metrics: true,
});
console.log(server.port);
for await (const _ of Deno.stdin.readable) { /* wait for EOF */ }
await server.close();
Deno.exit(0);
