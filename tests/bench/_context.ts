// What every benchmark section receives.
import type { Checkout } from "./_checkout.ts";
import type { SectionResult } from "./_stats.ts";

/** The run a section belongs to. */
export interface BenchContext {
  checkout: Checkout;
  /** Small counts and sizes, for smoke tests: the figures are then only meant to exist, not to be good. */
  quick: boolean;
  /** Progress for the person watching (stderr, so `--json` stays clean). */
  log(message: string): void;
}

/** A benchmark section. */
export interface Section {
  name: string;
  /** One line on what it measures, for `--help`. */
  about: string;
  run(context: BenchContext): Promise<SectionResult>;
}

/** A local spawn of `argv` with piped output, awaited to the end: the baseline of the exec figures. */
export async function localSpawn(argv: string[]): Promise<void> {
  await new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
}
