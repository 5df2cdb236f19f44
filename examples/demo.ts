/**
 * The quick-start demo: a controller and a local daemon, a few commands and their output.
 *
 * ```sh
 * deno task demo
 * ```
 *
 * @module
 */

import { Server } from "../mod.ts";
import { DAEMON_PERMISSION_FLAGS } from "../daemon/permissions.ts";

await using server = await Server.listen({ port: 0 });
console.log(`controller listening on ${server.url}`);

// Start a worker daemon on this machine; on a real fleet you run `sandd --server-url ...` on each worker.
const daemon = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    ...DAEMON_PERMISSION_FLAGS,
    new URL("../daemon/main.ts", import.meta.url).pathname,
    "--server-url",
    server.url,
    "--daemon-id",
    "demo-worker",
    "--label",
    "role=demo",
    "--log-level",
    "warning",
  ],
  stdin: "null",
}).spawn();

try {
  const info = await server.waitForDaemon("demo-worker", { timeout: 30_000 });
  console.log(`daemon ${info.id} connected: ${info.hostname} ${info.platform}/${info.arch}`);

  for (
    const command of ["uname -a", "echo $((6 * 7))", "ls /no/such/place", [
      "printf",
      "%s\\n",
      "argv, no shell",
    ]]
  ) {
    const r = await server.exec("demo-worker", command, { timeout: 10_000 });
    console.log(
      `\n$ ${Array.isArray(command) ? JSON.stringify(command) : command}  (exit ${r.exitCode}, ${
        r.durationMs.toFixed(1)
      } ms)`,
    );
    if (r.stdout) console.log(r.stdout.trimEnd());
    if (r.stderr) console.log(`stderr: ${r.stderr.trimEnd()}`);
  }

  console.log("\n$ sort  (stdin streamed, then EOF)");
  console.log(
    (await server.exec("demo-worker", "sort", { stdin: "pear\napple\nfig\n" })).stdout.trimEnd(),
  );

  console.log("\nfive commands at once, one second each:");
  const started = performance.now();
  await Promise.all(Array.from({ length: 5 }, () => server.exec("demo-worker", "sleep 1")));
  console.log(`  done in ${((performance.now() - started) / 1000).toFixed(2)} s`);

  console.log("\na streaming process:");
  const p = await server.spawn("demo-worker", "for i in 1 2 3; do echo tick $i; sleep 0.2; done");
  for await (const chunk of p.stdout.pipeThrough(new TextDecoderStream())) {
    Deno.stdout.write(new TextEncoder().encode(`  ${chunk}`));
  }
  console.log(`  exit ${(await p.status).exitCode}`);
} finally {
  daemon.kill("SIGTERM");
  await daemon.status;
}
