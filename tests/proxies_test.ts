// Workers behind proxies, with the real programs from Debian: tinyproxy (HTTP CONNECT with basic auth), dante
// (SOCKS5) and a TLS-terminating nginx in front of the controller. Each test skips with a printed reason when its
// program is missing.
import { assert, assertEquals } from "./_assert.ts";
import { TestDaemon } from "./_daemon.ts";
import { LinkProxy } from "./_proxy.ts";
import { hasOpenssl, makeTestCerts } from "./_certs.ts";
import { Server } from "../mod.ts";

function which(name: string): string | null {
  for (
    const dir of ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin", "/usr/local/sbin"]
  ) {
    try {
      Deno.statSync(`${dir}/${name}`);
      return `${dir}/${name}`;
    } catch { /* next */ }
  }
  return null;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Resolve once something accepts TCP connections on the port. */
async function listening(port: number, child: Deno.ChildProcess, what: string): Promise<void> {
  let exited = false;
  child.status.then(() => exited = true);
  const deadline = Date.now() + 10_000;
  while (true) {
    if (exited) throw new Error(`${what} exited before listening`);
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`${what} is not listening on ${port}`);
      // Nothing to await: the program gives no signal that it listens.
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

interface Service extends AsyncDisposable {
  port: number;
  dir: string;
  /** Stop it (SIGTERM) and wait. */
  stop(): Promise<void>;
}

async function service(
  what: string,
  program: string,
  args: (dir: string, port: number) => string[],
  config: (dir: string, port: number) => string,
  configName: string,
  fixedPort?: number,
  fixedDir?: string,
): Promise<Service> {
  const dir = fixedDir ?? await Deno.makeTempDir({ prefix: `sandd-${what}-` });
  const port = fixedPort ?? freePort();
  await Deno.writeTextFile(`${dir}/${configName}`, config(dir, port));
  const child = new Deno.Command(program, {
    args: args(dir, port),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    await child.status;
    await stderr;
  };
  try {
    await listening(port, child, what);
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}: ${await stderr}`);
  }
  return {
    port,
    dir,
    stop,
    async [Symbol.asyncDispose]() {
      await stop();
      if (!fixedDir) await Deno.remove(dir, { recursive: true });
    },
  };
}

const TINYPROXY = which("tinyproxy");
const DANTED = which("danted");
const NGINX = which("nginx");
const ROOT = Deno.uid() === 0;

function tinyproxy(auth?: string): Promise<Service> {
  return service(
    "tinyproxy",
    TINYPROXY!,
    (dir) => ["-d", "-c", `${dir}/tinyproxy.conf`],
    (_dir, port) =>
      [
        `Port ${port}`,
        "Listen 127.0.0.1",
        "Timeout 600",
        "MaxClients 200",
        "Allow 127.0.0.1",
        "LogLevel Error",
        ...(ROOT ? ["User nobody", "Group nogroup"] : []),
        ...(auth ? [`BasicAuth ${auth.replace(":", " ")}`] : []),
        "",
      ].join("\n"),
    "tinyproxy.conf",
  );
}

function dante(blockPort?: number): Promise<Service> {
  return service(
    "danted",
    DANTED!,
    (dir) => ["-f", `${dir}/danted.conf`, "-N", "1"],
    (_dir, port) =>
      [
        "logoutput: stderr",
        `internal: 127.0.0.1 port = ${port}`,
        "external: 127.0.0.1",
        "clientmethod: none",
        "socksmethod: none",
        ...(ROOT ? ["user.privileged: root", "user.unprivileged: nobody"] : []),
        "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }",
        ...(blockPort ? [`socks block { from: 0.0.0.0/0 to: 0.0.0.0/0 port = ${blockPort} }`] : []),
        "socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }",
        "",
      ].join("\n"),
    "danted.conf",
  );
}

const ignoreTiny = TINYPROXY === null;
if (ignoreTiny) console.log("proxies_test: tinyproxy not installed; HTTP CONNECT tests skip");
if (DANTED === null) console.log("proxies_test: danted not installed; SOCKS5 tests skip");
if (NGINX === null) console.log("proxies_test: nginx not installed; the nginx test skips");

Deno.test({
  name: "proxies: a daemon reaches its controller through tinyproxy (HTTP CONNECT, basic auth)",
  ignore: ignoreTiny,
  async fn() {
    await using server = await Server.listen({ port: 0 });
    await using proxy = await tinyproxy("agent:s3cret");
    await using daemon = new TestDaemon({
      id: "behind-connect",
      url: server.url,
      args: ["--proxy", `http://agent:s3cret@127.0.0.1:${proxy.port}`],
    });
    await server.waitForDaemon(daemon.id, { timeout: 20_000 });
    const r = await server.exec(daemon.id, "echo through the proxy");
    assertEquals(r.stdout, "through the proxy\n");
  },
});

Deno.test({
  name: "proxies: a refusing proxy is a clear error, retried with backoff, no busy loop",
  ignore: ignoreTiny,
  async fn() {
    await using server = await Server.listen({ port: 0 });
    await using proxy = await tinyproxy("agent:s3cret");
    // Count the daemon's attempts with a relay in front of the proxy.
    await using relay = new LinkProxy(proxy.port);
    await using daemon = new TestDaemon({
      id: "wrong-password",
      url: server.url,
      args: ["--proxy", `http://agent:wrong@127.0.0.1:${relay.port}`, "--reconnect-max", "0.4"],
    });
    await daemon.waitForLog("wants authentication");
    const log = daemon.log;
    assert(log.includes("127.0.0.1:" + relay.port), log);
    assertEquals(log.includes("wrong"), false, "the password is not logged");
    // With the first delay at 0.1 s and the cap at 0.4 s, 1.5 s allow a handful of attempts, not a spin. The
    // delays are fully jittered (uniform in [0, cap]: 0.2 s on average), so 13 or more come now and then (one CI
    // run counted 14); a spin would be hundreds. 40 (37 ms apart) is far from both.
    const start = relay.accepted;
    await new Promise((r) => setTimeout(r, 1_500));
    const attempts = relay.accepted - start;
    assert(attempts >= 2 && attempts <= 40, `attempts in 1.5 s: ${attempts}`);
    assertEquals(server.daemonCount, 0);
  },
});

Deno.test({
  name: "proxies: wss:// through a CONNECT tunnel checks the controller's certificate by its name",
  ignore: ignoreTiny,
  async fn() {
    if (!(await hasOpenssl())) {
      console.log("skipped: openssl missing");
      return;
    }
    await using certs = await makeTestCerts();
    await using server = await Server.listen({ port: 0, cert: certs.cert, key: certs.key });
    await using proxy = await tinyproxy();
    const url = `wss://localhost:${server.port}/ws`;
    await using daemon = new TestDaemon({
      id: "tls-behind-connect",
      url,
      args: ["--proxy", `http://127.0.0.1:${proxy.port}`, "--ca-cert", certs.caFile],
    });
    await server.waitForDaemon(daemon.id, { timeout: 20_000 });
    assertEquals((await server.exec(daemon.id, ["printf", "%s", "tls ok"])).stdout, "tls ok");
    // Without the CA the same tunnel is refused by the certificate check, not by the proxy.
    await using untrusting = new TestDaemon({
      id: "tls-untrusting",
      url,
      args: ["--proxy", `http://127.0.0.1:${proxy.port}`],
    });
    await untrusting.waitForLog("certificate");
    assertEquals(server.daemon("tls-untrusting"), undefined);
  },
});

Deno.test({
  name:
    "proxies: SOCKS5 through dante, with the name resolved locally (socks5) or by the proxy (socks5h)",
  ignore: DANTED === null,
  async fn() {
    await using server = await Server.listen({ port: 0 });
    await using proxy = await dante();
    for (const scheme of ["socks5", "socks5h"]) {
      await using daemon = new TestDaemon({
        id: `behind-${scheme}`,
        url: `ws://localhost:${server.port}/ws`,
        args: ["--proxy", `${scheme}://127.0.0.1:${proxy.port}`],
      });
      await server.waitForDaemon(daemon.id, { timeout: 20_000 });
      assertEquals((await server.exec(daemon.id, ["echo", scheme])).stdout, `${scheme}\n`);
    }
  },
});

Deno.test({
  name: "proxies: a SOCKS5 proxy whose rules refuse the controller is a clear error",
  ignore: DANTED === null,
  async fn() {
    await using server = await Server.listen({ port: 0 });
    await using proxy = await dante(server.port);
    await using daemon = new TestDaemon({
      id: "socks-refused",
      url: server.url,
      args: ["--proxy", `socks5://127.0.0.1:${proxy.port}`],
    });
    await daemon.waitForLog("refused to connect to 127.0.0.1:" + server.port);
    assertEquals(server.daemonCount, 0);
  },
});

Deno.test({
  name: "proxies: behind a TLS-terminating nginx, a stream survives nginx restarting mid-stream",
  ignore: NGINX === null,
  async fn() {
    if (!(await hasOpenssl())) {
      console.log("skipped: openssl missing");
      return;
    }
    await using certs = await makeTestCerts();
    await using server = await Server.listen({ port: 0, reconnectGraceMs: 15_000 });
    const dir = await Deno.makeTempDir({ prefix: "sandd-nginx-" });
    const port = freePort();
    const conf = (d: string, p: number) =>
      [
        "daemon off;",
        "master_process on;",
        "worker_processes 1;",
        `pid ${d}/nginx.pid;`,
        "error_log stderr warn;",
        "events { worker_connections 256; }",
        "http {",
        "  access_log off;",
        ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((t) =>
          `  ${t}_temp_path ${d}/${t};`
        ),
        "  server {",
        `    listen 127.0.0.1:${p} ssl;`,
        `    ssl_certificate ${certs.dir}/server.pem;`,
        `    ssl_certificate_key ${certs.dir}/server.key;`,
        "    location / {",
        `      proxy_pass http://127.0.0.1:${server.port};`,
        "      proxy_http_version 1.1;",
        "      proxy_set_header Upgrade $http_upgrade;",
        '      proxy_set_header Connection "upgrade";',
        "      proxy_read_timeout 3600s;",
        "      proxy_send_timeout 3600s;",
        "      proxy_buffering off;",
        "    }",
        "  }",
        "}",
        "",
      ].join("\n");
    const start = () =>
      service(
        "nginx",
        NGINX!,
        (d) => ["-p", d, "-c", `${d}/nginx.conf`, "-e", "stderr"],
        conf,
        "nginx.conf",
        port,
        dir,
      );
    try {
      let nginx = await start();
      await using daemon = new TestDaemon({
        id: "behind-nginx",
        url: `wss://localhost:${port}/ws`,
        args: ["--ca-cert", certs.caFile],
      });
      await server.waitForDaemon(daemon.id, { timeout: 20_000 });
      assertEquals((await server.exec(daemon.id, "echo via nginx")).stdout, "via nginx\n");
      // A slow stream: nginx restarts while it runs; the daemon reconnects and the output resumes.
      const p = await server.spawn(daemon.id, "for i in $(seq 1 60); do echo $i; sleep 0.05; done");
      const reader = p.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      while (!text.includes("\n10\n")) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
      }
      const disconnected = new Promise<void>((resolve) =>
        server.addEventListener("disconnect", () => resolve(), { once: true })
      );
      await nginx.stop();
      await disconnected;
      nginx = await start();
      await using _nginx = nginx;
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
      }
      const expected = Array.from({ length: 60 }, (_, i) => `${i + 1}\n`).join("");
      assertEquals(text, expected);
      assertEquals((await p.status).exitCode, 0);
      assertEquals(p.gaps.length, 0);
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
