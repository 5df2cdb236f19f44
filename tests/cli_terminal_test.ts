// The terminal commands of `sandd` as child processes against a real `sandd serve` and daemon: `exec -t` runs on a
// terminal and exits with the program's code; `shell -- CMD` passes piped input to the terminal (EOF as Ctrl-D) and
// exits with its code; `attach` of a terminal session left running; `forward` tunnels a local port through the controller.
import { assertEquals, assertStringIncludes } from "./_assert.ts";
import { SANDD, sandd, startFleet } from "./_cli.ts";
import { denoServer, readAll } from "./_forward.ts";
import { DAEMON_PERMISSION_FLAGS } from "../daemon/permissions.ts";
import { EXIT } from "../daemon/commands/exit_codes.ts";

Deno.test("cli: exec -t, shell -- CMD with piped input, and attach of a terminal session", async () => {
  await using fleet = await startFleet([{ id: "cli-t" }]);
  const { env } = fleet;
  // The terminal route belongs to the console work; before it is merged the API answers 501.
  const probe = await fetch(`${fleet.serve.url}/api/v1/daemons/cli-t/terminal`);
  await probe.body?.cancel();
  if (probe.status === 501) {
    console.log("skipped: the control API's terminal route is not implemented in this build (501)");
    return;
  }
  const [tty, shell] = await Promise.all([
    sandd(["exec", "-t", "cli-t", "--", "sh", "-c", "test -t 0 && echo on-a-tty; exit 5"], { env }),
    sandd(["shell", "cli-t", "--", "sh", "-c", "read x; echo got:$x; exit 4"], {
      env,
      stdin: "hello\n",
    }),
  ]);
  assertEquals(tty.code, 5, tty.stderr);
  assertStringIncludes(tty.stdout, "on-a-tty");
  assertEquals(shell.code, 4, shell.stderr);
  assertStringIncludes(shell.stdout, "got:hello");

  // A terminal session left running (opened through the API's terminal socket, then detached) is attached by
  // `sandd attach`, which replays its output and types our input into it.
  const socket = new WebSocket(
    `${fleet.serve.url.replace(/^http/, "ws")}/api/v1/daemons/cli-t/terminal?command=${
      encodeURIComponent("echo ready; read x; echo again:$x; exit 6")
    }`,
  );
  const opened = Promise.withResolvers<string>();
  const ready = Promise.withResolvers<void>();
  let seen = "";
  socket.binaryType = "arraybuffer";
  socket.onmessage = (event) => {
    if (typeof event.data === "string") {
      const message = JSON.parse(event.data);
      if (message.type === "open") opened.resolve(message.id);
    } else {
      seen += new TextDecoder().decode(event.data);
      if (seen.includes("ready")) ready.resolve();
    }
  };
  socket.onerror = () => opened.reject(new Error("terminal socket failed"));
  const id = await opened.promise;
  await ready.promise;
  const closed = new Promise((resolve) => (socket.onclose = resolve));
  socket.send(JSON.stringify({ type: "detach" }));
  socket.close();
  await closed;
  const attached = await sandd(["attach", "cli-t", id], { env, stdin: "later\n" });
  assertEquals(attached.code, 6, attached.stderr);
  assertStringIncludes(attached.stdout, "ready");
  assertStringIncludes(attached.stdout, "again:later");
});

Deno.test("cli: forward tunnels a local port to the worker until SIGTERM; bad input is a usage error", async () => {
  await using echo = denoServer("echo");
  await using fleet = await startFleet([{ id: "cli-f" }]);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...DAEMON_PERMISSION_FLAGS,
      SANDD,
      "forward",
      "--json",
      "cli-f",
      String(await echo.port),
      "0",
    ],
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", NO_COLOR: "1", ...fleet.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let printed = "";
  while (!printed.trimEnd().endsWith("}")) {
    const { value, done } = await reader.read();
    if (done) break;
    printed += value;
  }
  const listening = JSON.parse(printed) as { hostname: string; port: number; remotePort: number };
  assertEquals(listening.remotePort, await echo.port);
  const conn = await Deno.connect({ hostname: listening.hostname, port: listening.port });
  const reading = readAll(conn);
  await conn.write(new TextEncoder().encode("via sandd forward"));
  await conn.closeWrite();
  assertEquals(new TextDecoder().decode(await reading), "via sandd forward");
  conn.close();
  child.kill("SIGTERM");
  const status = await child.status;
  await reader.cancel();
  assertEquals(status.code, EXIT.OK, await stderr);
  const bad = await sandd(["forward", "cli-f", "http"], { env: fleet.env });
  assertEquals(bad.code, EXIT.USAGE, bad.stderr);
  const far = await sandd(["forward", "cli-f", "10.0.0.1:22"], { env: fleet.env });
  assertEquals(far.code, EXIT.USAGE, far.stderr);
  const unknown = await sandd(["forward", "nobody", "22"], { env: fleet.env });
  assertEquals(unknown.code, EXIT.UNKNOWN_WORKER, unknown.stderr);
});
