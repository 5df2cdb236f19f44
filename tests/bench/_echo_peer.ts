// A TCP echo for tests/bench/machine.ts: prints its port, echoes every connection's bytes back until it closes.
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log((listener.addr as Deno.NetAddr).port);
for await (const conn of listener) {
  conn.setNoDelay(true);
  void (async () => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await conn.read(buffer);
        if (n === null) break;
        for (let at = 0; at < n;) at += await conn.write(buffer.subarray(at, n));
      }
    } finally {
      conn.close();
    }
  })();
}
