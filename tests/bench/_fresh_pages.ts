// Run by tests/bench/machine.ts in a process of its own (a bench process that had allocated and dropped these
// buffers measured the sections after it differently): µs per 4 KiB page for the first write to a new 64 MiB
// buffer, and for writing the same pages again; prints one JSON line { fresh, touched } (medians).
const PAGE = 4096;
const rounds = Number(Deno.args[0] ?? 9);

function perPage(bytes: Uint8Array, value: number): number {
  const t = performance.now();
  for (let i = 0; i < bytes.length; i += PAGE) bytes[i] = value;
  return (performance.now() - t) * 1000 / (bytes.length / PAGE);
}

const fresh: number[] = [];
const touched: number[] = [];
for (let round = 0; round < rounds; round++) {
  const bytes = new Uint8Array(64 * 1024 * 1024);
  fresh.push(perPage(bytes, 1));
  touched.push(perPage(bytes, 2));
}
const median = (values: number[]) => values.sort((a, b) => a - b)[values.length >> 1]!;
console.log(JSON.stringify({ fresh: median(fresh), touched: median(touched) }));
