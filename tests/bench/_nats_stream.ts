// The floor of a stream relayed through NATS: bytes published by one process and read by another through
// nats-server, with credit flow control as a relayed SandD stream has (the reader grants the writer credit as it
// consumes), but no SandD code: npm @nats-io/transport-node on both sides, as the cluster nodes use it.
//
// `deno run -A _nats_stream.ts NATS_URL SUBJECT BYTES MESSAGE WINDOW`: the writer. It publishes BYTES in messages of
// MESSAGE bytes on SUBJECT, never more than WINDOW bytes ahead of the credit the reader granted on SUBJECT.credit
// (each grant an ASCII byte count), prints "ready" once subscribed, starts on a line on stdin, exits when done.
// The reader side is `natsStreamFloor` below.
import { connect } from "@nats-io/transport-node";

/** One run of the floor: MiB/s of `bytes` streamed from a writer process through nats-server to this process. */
export async function natsStreamFloor(
  natsUrl: string,
  bytes: number,
  message: number,
  window: number,
): Promise<number> {
  const subject = `bench.floor.stream.${crypto.randomUUID().slice(0, 8)}`;
  const nc = await connect({ servers: natsUrl });
  const encoder = new TextEncoder();
  let received = 0;
  let granted = 0;
  const done = Promise.withResolvers<void>();
  const sub = nc.subscribe(subject, {
    callback: (_error, msg) => {
      received += msg.data.length;
      // Credit back every quarter window consumed, as a relayed stream acknowledges.
      if (received - granted >= window / 4 || received === bytes) {
        granted = received;
        nc.publish(`${subject}.credit`, encoder.encode(String(received)));
      }
      if (received >= bytes) done.resolve();
    },
  });
  await nc.flush();
  const writer = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL(import.meta.url).pathname,
      natsUrl,
      subject,
      String(bytes),
      String(message),
      String(window),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = writer.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("ready")) {
    const { value, done } = await lines.read();
    if (done) throw new Error("the NATS stream writer exited before it was ready");
    seen += value;
  }
  const stdin = writer.stdin.getWriter();
  const started = performance.now();
  await stdin.write(encoder.encode("go\n"));
  await done.promise;
  const ms = performance.now() - started;
  await stdin.close();
  lines.releaseLock();
  await writer.stdout.cancel().catch(() => {});
  await writer.status;
  sub.unsubscribe();
  await nc.close();
  return bytes / 1024 / 1024 / (ms / 1000);
}

if (import.meta.main) {
  const [url, subject, bytesText, messageText, windowText] = Deno.args;
  const bytes = Number(bytesText);
  const message = Number(messageText);
  const window = Number(windowText);
  const nc = await connect({ servers: url! });
  let credit = window;
  let wake: (() => void) | null = null;
  nc.subscribe(`${subject}.credit`, {
    callback: (_error, msg) => {
      credit = Number(new TextDecoder().decode(msg.data)) + window;
      wake?.();
    },
  });
  await nc.flush();
  console.log("ready");
  const reader = Deno.stdin.readable.getReader();
  await reader.read();
  const payload = new Uint8Array(message).fill(120);
  let sent = 0;
  while (sent < bytes) {
    while (sent >= credit) await new Promise<void>((resolve) => wake = resolve);
    const n = Math.min(message, bytes - sent, credit - sent);
    nc.publish(subject!, n === message ? payload : payload.subarray(0, n));
    sent += n;
  }
  await nc.flush();
  await reader.read(); // stdin closes: done
  await nc.close();
}
