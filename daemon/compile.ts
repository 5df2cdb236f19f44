/**
 * Build self-contained `sandd` executables with `deno compile`, one per target, embedding exactly the permission
 * flags the tests run the daemon with. `deno compile` fetches a `denort` runtime per target; set `DENORT_BIN` to use
 * a local one. A target that cannot be built is reported and the others still build.
 *
 * ```sh
 * deno task compile                 # every target
 * deno task compile x86_64-unknown-linux-gnu
 * ```
 *
 * @module
 */

import { DAEMON_PERMISSION_FLAGS } from "./permissions.ts";

/** The targets `sandd` ships for. */
export const TARGETS: readonly string[] = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
];

if (import.meta.main) {
  const wanted = Deno.args.length ? Deno.args : TARGETS;
  for (const target of wanted) {
    if (!TARGETS.includes(target)) {
      console.error(`Unknown target '${target}'; known: ${TARGETS.join(", ")}`);
      Deno.exit(2);
    }
  }
  const entry = new URL("./main.ts", import.meta.url).pathname;
  const dist = new URL("../dist/", import.meta.url).pathname;
  await Deno.mkdir(dist, { recursive: true });
  let failed = 0;
  for (const target of wanted) {
    const output = `${dist}sandd-${target}${target.includes("windows") ? ".exe" : ""}`;
    const { code } = await new Deno.Command(Deno.execPath(), {
      args: ["compile", ...DAEMON_PERMISSION_FLAGS, "--target", target, "--output", output, entry],
    }).spawn().status;
    console.log(`${code === 0 ? "built" : "FAILED"} ${target}${code === 0 ? ` -> ${output}` : ""}`);
    if (code !== 0) failed++;
  }
  Deno.exit(failed ? 1 : 0);
}
