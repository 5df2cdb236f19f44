// Shared terminal sessions: several handles on one shell through one controller (the agent's handle, a second
// interactive one, a read-only watcher) see the same bytes; read-only handles cannot type or resize; the size
// follows the handle that resized last; a watcher that stops reading is skipped ahead (a gap) instead of
// freezing the others; the last handle to leave detaches and the session stays on the worker.
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { ShellReadOnlyError } from "../mod.ts";
import { startWorker } from "./_daemon.ts";

const BASH = ["bash", "--norc", "--noprofile", "-i"];
const BASH_ENV = { PS1: "$ ", TERM: "dumb" };

/** Collects a stream's text in the background; `until` waits for a pattern anywhere in it. */
class Reader {
  text = "";
  bytes = 0;
  readonly done: Promise<void>;
  #wake = () => {};

  constructor(output: ReadableStream<Uint8Array>) {
    const decoder = new TextDecoder();
    this.done = (async () => {
      try {
        for await (const chunk of output) {
          this.bytes += chunk.length;
          this.text += decoder.decode(chunk, { stream: true });
          this.#wake();
        }
      } catch {
        // detached or failed: stop
      }
      this.#wake();
    })();
  }

  async until(pattern: RegExp, ms = 15_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pattern.test(this.text)) {
      if (Date.now() > deadline) {
        throw new Error(`No ${pattern} within ${ms} ms: ${JSON.stringify(this.text.slice(-500))}`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.#wake = resolve),
        new Promise<void>((resolve) => timer = setTimeout(resolve, 200)),
      ]);
      clearTimeout(timer);
    }
  }
}

Deno.test("several handles share one shell: same bytes, read-only cannot type, size follows the owner", async () => {
  await using t = await startWorker("w1");
  const owner = await t.server.shell("w1", { command: BASH, env: BASH_ENV, cols: 80, rows: 24 });
  const a = new Reader(owner.output);
  await owner.write("echo first-$((1+1))\r");
  await a.until(/first-2/);
  const sizes: string[] = [];
  const watcher = await t.server.attachShell("w1", owner.id, {
    readOnly: true,
    onResize: ({ cols, rows }) => sizes.push(`${cols}x${rows}`),
  });
  const second = await t.server.attachShell("w1", owner.id);
  assert(watcher.readOnly && !second.readOnly);
  const w = new Reader(watcher.output);
  const b = new Reader(second.output);
  // Joiners replay the controller's scrollback from its first byte.
  await w.until(/first-2/);
  await b.until(/first-2/);
  assertEquals(watcher.gaps, []);
  await second.write("echo second-$((2+1))\r");
  await Promise.all([a.until(/second-3/), w.until(/second-3/), b.until(/second-3/)]);
  await assertRejects(() => watcher.write("echo nope\r"), ShellReadOnlyError);
  await assertRejects(() => watcher.resize(100, 30), ShellReadOnlyError);
  assertEquals(owner.viewers.length, 3);
  assertEquals(watcher.viewers.filter((v) => v.self && v.readOnly).length, 1);
  await second.resize(120, 40);
  assertEquals(owner.size, { cols: 120, rows: 40 });
  assertEquals(sizes, ["120x40"]);
  assert(second.viewers.find((v) => v.self)!.owner);
  await owner.write("stty size\r");
  await Promise.all([a.until(/40 120/), w.until(/40 120/)]);
  // Every handle saw the same bytes, byte for byte, from the point the watcher joined at (the first byte).
  assertEquals(w.text, a.text.slice(0, w.text.length));
  // One handle leaving leaves the others.
  await second.detach();
  await b.done;
  await owner.write("echo third-$((3+1))\r");
  await Promise.all([a.until(/third-4/), w.until(/third-4/)]);
  await owner.write("exit 3\r");
  assertEquals((await owner.exited).exitCode, 3);
  assertEquals((await watcher.exited).exitCode, 3);
  await Promise.all([a.done, w.done]);
  await owner.close();
  await watcher.close();
});

Deno.test("a watcher that stops reading does not freeze the others: it is skipped ahead and told", async () => {
  await using t = await startWorker("w1");
  const owner = await t.server.shell("w1", {
    command: BASH,
    env: BASH_ENV,
    scrollback: 64 * 1024,
  });
  const a = new Reader(owner.output);
  const watcher = await t.server.attachShell("w1", owner.id, { readOnly: true });
  const gaps: number[] = [];
  // The watcher reads nothing while 2 MB go by: the owner is paced by itself only.
  await owner.write("head -c 2000000 /dev/zero | tr '\\0' x; echo; echo big-$((4+1))\r");
  await a.until(/big-5/, 30_000);
  assert(a.bytes > 2_000_000, `owner read ${a.bytes}`);
  const lagging = owner.viewers.find((v) => v.readOnly)!;
  assert(lagging.behind <= 64 * 1024 + 65536, `behind ${lagging.behind}`);
  const reader = watcher.output.getReader();
  const first = await reader.read();
  assert(!first.done && first.value.length > 0);
  assertEquals(watcher.gaps.length, 1);
  gaps.push(watcher.gaps[0]!.from, watcher.gaps[0]!.to);
  assertEquals(gaps[0], 0);
  assert(gaps[1]! > 1_800_000, `gap ${gaps}`);
  reader.releaseLock();
  // The first chunk after the gap may already hold the end of the output (PTY output comes in batches of up to
  // 64 KiB): it counts toward what the watcher saw.
  const w = new Reader(watcher.output);
  w.text = new TextDecoder().decode(first.value) + w.text;
  await w.until(/big-5/);
  assertEquals(owner.gaps, []);
  await owner.close();
  await Promise.all([a.done, w.done]);
});

Deno.test("the last handle to leave detaches; the session stays and is attached again with its scrollback", async () => {
  await using t = await startWorker("w1");
  const owner = await t.server.shell("w1", { command: BASH, env: BASH_ENV });
  const a = new Reader(owner.output);
  const watcher = await t.server.attachShell("w1", owner.id, { readOnly: true });
  const w = new Reader(watcher.output);
  await owner.write("echo kept-$((5+1))\r");
  await Promise.all([a.until(/kept-6/), w.until(/kept-6/)]);
  await owner.detach();
  await a.done;
  await assertRejects(() => owner.write("x"), Error, "Detached");
  await watcher.detach();
  await w.done;
  const again = await t.server.attachShell("w1", owner.id);
  const r = new Reader(again.output);
  await r.until(/kept-6/);
  await again.write("exit 2\r");
  assertEquals((await again.exited).exitCode, 2);
  await r.done;
});
