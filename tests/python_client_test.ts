// The Python client (server/python/sandd.py) against a real controller with the control API and a real daemon:
// its unittest suite and its example, run with the machine's python3.
import { assertEquals, assertStringIncludes } from "./_assert.ts";
import { Server } from "../mod.ts";
import { TestDaemon } from "./_daemon.ts";

const PYTHON_DIR = new URL("../server/python/", import.meta.url).pathname;
const TOKEN = "python-client-token-0123456789";

function python(): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    try {
      if (Deno.statSync(`${dir}/python3`).isFile) return `${dir}/python3`;
    } catch {
      // not here
    }
  }
  return null;
}

async function withController(
  fn: (env: Record<string, string>) => Promise<void>,
): Promise<void> {
  const server = await Server.listen({
    port: 0,
    reconnectGraceMs: 5_000,
    // Idle keep-alive connections are closed after this: the client must notice and send again.
    headerTimeoutMs: 2_000,
    control: { tokens: [{ token: TOKEN, name: "python" }] },
  });
  const daemon = new TestDaemon({ id: "py-1", url: server.url, args: ["--label", "lang=python"] });
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "sandd-python-" }));
  try {
    await server.waitForDaemon("py-1", { timeout: 20_000 });
    await fn({
      SANDD_URL: `http://127.0.0.1:${server.port}`,
      SANDD_API_TOKEN: TOKEN,
      SANDD_DAEMON: "py-1",
      SANDD_TMP: dir,
      SANDD_IDLE_CLOSE_MS: "2000",
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      PYTHONDONTWRITEBYTECODE: "1",
    });
  } finally {
    await daemon.stop();
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function run(
  exe: string,
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; out: string }> {
  const out = await new Deno.Command(exe, {
    args,
    cwd: PYTHON_DIR,
    env,
    clearEnv: true,
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, out: decoder.decode(out.stdout) + decoder.decode(out.stderr) };
}

Deno.test("python client: its unittest suite passes against a real controller and daemon", async () => {
  const exe = python();
  if (!exe) {
    console.log("skipped: python3 is not installed");
    return;
  }
  await withController(async (env) => {
    const { code, out } = await run(exe, ["-m", "unittest", "-v", "test_sandd"], env);
    assertEquals(code, 0, `python3 -m unittest failed:\n${out}`);
    assertStringIncludes(out, "OK");
  });
});

Deno.test("python client: the example runs", async () => {
  const exe = python();
  if (!exe) {
    console.log("skipped: python3 is not installed");
    return;
  }
  await withController(async (env) => {
    const { code, out } = await run(exe, ["example.py"], env);
    assertEquals(code, 0, `example.py failed:\n${out}`);
    assertStringIncludes(out, "hello from py-1");
  });
});
