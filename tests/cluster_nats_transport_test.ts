// The cluster's NATS transport on Deno's own TCP (server/cluster/_nats_transport.ts) against a real nats-server:
// messages in order and whole (large ones too), request/reply and JetStream over it, a server restart (the client
// sees disconnect, reconnects, and its subscriptions work again), TLS with a CA file, and a clean close.
import { hasOpenssl, makeTestCerts } from "./_certs.ts";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection, Status } from "@nats-io/transport-node";
import { connectDeno, DenoNatsTransport } from "../server/cluster/_nats_transport.ts";
import { onlyMessagesUnder, protocolCut } from "../server/cluster/_nats_framing.ts";
import { assert, assertEquals } from "./_assert.ts";
import { haveNats, TestNats } from "./_nats.ts";

const NATS = haveNats();
const encoder = new TextEncoder();

Deno.test("nats framing: cuts after whole messages and says what the next one needs", () => {
  const cut = (text: string) => {
    const bytes = encoder.encode(text);
    return protocolCut(bytes, bytes.length);
  };
  assertEquals(cut(""), { end: 0, want: 0 });
  assertEquals(cut("PI"), { end: 0, want: 0 });
  assertEquals(cut("PING\r\nPONG\r\n+OK\r\n"), { end: 17, want: 0 });
  // MSG <subject> <sid> [reply] <size>; HMSG <subject> <sid> [reply] <header size> <total size>.
  assertEquals(cut("MSG a 1 5\r\nhello\r\nPING\r\n"), { end: 24, want: 0 });
  assertEquals(cut("MSG a 1 _INBOX.x 5\r\nhel"), { end: 0, want: 20 + 5 + 2 });
  assertEquals(cut("PONG\r\nHMSG a 1 12 17\r\nNATS/1.0\r\n\r\nhello\r\n"), {
    end: 41,
    want: 0,
  });
  assertEquals(cut("PONG\r\nHMSG a 1 12 17\r\nNATS/1.0\r\n"), { end: 6, want: 16 + 17 + 2 });
  // A payload holding protocol-looking bytes is skipped by its size.
  assertEquals(cut("MSG a 1 6\r\nMSG \r\n\r\n"), { end: 19, want: 0 });
  // A line it does not know (or a size it cannot read) counts as a whole message.
  assertEquals(cut("MSG a 1 x\r\n-ERR 'y'\r\n"), { end: 21, want: 0 });
});

Deno.test("nats framing: a read is reusable only when it holds nothing but messages under the prefix", () => {
  const under = (text: string) => {
    const bytes = encoder.encode(text);
    return onlyMessagesUnder(bytes, bytes.length, encoder.encode("sandd.back."));
  };
  assert(
    under(
      "MSG sandd.back.1 3 5\r\nhello\r\nHMSG sandd.back.1 3 12 17\r\nNATS/1.0\r\n\r\nhello\r\n",
    ),
  );
  assert(!under("")); // nothing to reuse it for is no reason to
  assert(!under("MSG sandd.back.1 3 5\r\nhello\r\nPING\r\n")); // not a message
  assert(!under("MSG sandd.back.1 3 5\r\nhello\r\nMSG $JS.API.x 4 2\r\nhi\r\n")); // a JetStream reply
  assert(!under("MSG sandd.bac 3 5\r\nhello\r\n")); // a shorter subject
  assert(!under("MSG sandd.back.1 3 5\r\nhel")); // not whole
});

/** Wait for a connection status of one type. */
async function statusOf(nc: NatsConnection, type: Status["type"]): Promise<void> {
  for await (const status of nc.status()) if (status.type === type) return;
}

Deno.test({
  name: "nats transport: messages in order and whole, request/reply and JetStream, a clean close",
  ignore: !NATS,
  async fn() {
    await using nats = await TestNats.start();
    const a = await connectDeno({ servers: nats.url });
    const b = await connectDeno({ servers: nats.url });
    try {
      // Many small messages and some over the read buffer, interleaved, from one publisher.
      const sizes = Array.from({ length: 400 }, (_, i) => i % 50 === 7 ? 700_000 + i : i);
      const got: Uint8Array[] = [];
      const done = Promise.withResolvers<void>();
      b.subscribe("t.data", {
        callback: (_error, msg) => {
          got.push(msg.data);
          if (got.length === sizes.length) done.resolve();
        },
      });
      await b.flush();
      for (const [i, size] of sizes.entries()) {
        const data = new Uint8Array(size);
        for (let j = 0; j < size; j += 997) data[j] = (i + j) & 0xff;
        a.publish("t.data", data);
      }
      await done.promise;
      for (const [i, size] of sizes.entries()) {
        const data = got[i]!;
        assertEquals(data.length, size, `message ${i}`);
        for (let j = 0; j < size; j += 997) assertEquals(data[j], (i + j) & 0xff, `message ${i}`);
      }
      b.subscribe("t.echo", { callback: (_error, msg) => void msg.respond(msg.data) });
      await b.flush();
      const reply = await a.request("t.echo", new TextEncoder().encode("hello"), {
        timeout: 5_000,
      });
      assertEquals(reply.string(), "hello");
      const kv = await new Kvm(a).create("transport_test", { history: 1 });
      await kv.put("k", "v");
      assertEquals((await kv.get("k"))?.string(), "v");
    } finally {
      await a.close();
      await b.close();
    }
    assert(a.isClosed() && b.isClosed());
  },
});

Deno.test({
  name:
    "nats transport: a restarted server is seen (disconnect), reconnected, and subscriptions work again",
  ignore: !NATS,
  async fn() {
    await using nats = await TestNats.start();
    const nc = await connectDeno({
      servers: nats.url,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
    });
    try {
      const got: string[] = [];
      nc.subscribe("t.after", { callback: (_error, msg) => void got.push(msg.string()) });
      await nc.flush();
      const down = statusOf(nc, "disconnect");
      await nats.stop();
      await down;
      const up = statusOf(nc, "reconnect");
      await nats.restart();
      await up;
      nc.publish("t.after", "again");
      await nc.flush();
      for (let i = 0; got.length === 0 && i < 100; i++) await nc.flush();
      assertEquals(got, ["again"]);
    } finally {
      await nc.close();
    }
  },
});

const OPENSSL = await hasOpenssl();
if (!OPENSSL) {
  console.log("skipped: openssl is not installed (needed to make the test's certificates)");
}

Deno.test({
  name: "nats transport: TLS to a server that requires it, trusting a CA file",
  ignore: !NATS || !OPENSSL,
  async fn() {
    await using certs = await makeTestCerts();
    {
      await using nats = await TestNats.start([
        "--tls",
        "--tlscert",
        `${certs.dir}/server.pem`,
        "--tlskey",
        `${certs.dir}/server.key`,
      ]);
      let transport: DenoNatsTransport | undefined;
      const nc = await connectDeno({ servers: nats.url, tls: { caFile: certs.caFile } });
      try {
        // The client's transport is ours, and encrypted.
        transport = (nc as unknown as { protocol: { transport: unknown } }).protocol
          .transport as DenoNatsTransport;
        assert(transport instanceof DenoNatsTransport, "the Deno transport is in use");
        assert(transport.isEncrypted(), "the connection is encrypted");
        nc.subscribe("t.echo", { callback: (_error, msg) => void msg.respond(msg.data) });
        await nc.flush();
        const reply = await nc.request("t.echo", new TextEncoder().encode("secret"), {
          timeout: 5_000,
        });
        assertEquals(reply.string(), "secret");
      } finally {
        await nc.close();
      }
      // Without the CA the server's certificate is refused.
      let refused = false;
      await connectDeno({ servers: nats.url, reconnect: false, maxReconnectAttempts: 0 }).then(
        (other) => other.close(),
        () => refused = true,
      );
      assert(refused, "a certificate from an unknown CA is refused");
    }
  },
});
