// The per-link cap on running file transfers (each holds a descriptor or two), so that a controller cannot push
// the daemon to its RLIMIT_NOFILE by opening transfers it never feeds or acknowledges (daemon/SECURITY.md).
import type { Link } from "./_link.ts";
import { DaemonRequestError } from "./process_table.ts";

/**
 * Most transfers (uploads and downloads together) one controller link may run at once. Each holds a descriptor
 * or two (a download its file, an upload its unnamed file and directory); beyond the cap a transfer is refused at
 * once with `EMFILE`, so a controller cannot push the daemon to its `RLIMIT_NOFILE`. Transfers parked by a
 * dropped link count against `MAX_PARKED` instead.
 */
export const MAX_TRANSFERS = 64;

/** Running transfers per link, against {@linkcode MAX_TRANSFERS}; and their idle deadline. */
export class TransferSlots {
  readonly #counts = new WeakMap<Link, number>();
  readonly #max: number;
  readonly idleMs: number;

  /**
   * @param max Most transfers per link.
   * @param idleMs The transfers' idle deadline (carried for the handlers).
   */
  constructor(max: number, idleMs: number) {
    this.#max = max;
    this.idleMs = idleMs;
  }

  /**
   * Take a place for a transfer on `link`.
   *
   * @returns Give the place back (once; later calls do nothing).
   * @throws {DaemonRequestError} `EMFILE` when the link runs the most transfers already.
   */
  take(link: Link, path: string): () => void {
    const count = this.#counts.get(link) ?? 0;
    if (count >= this.#max) {
      throw new DaemonRequestError(
        "EMFILE",
        `Too many transfers: at most ${this.#max} transfers may run at once on one link (refused '${path}')`,
        { path },
      );
    }
    this.#counts.set(link, count + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.#counts.set(link, Math.max(0, (this.#counts.get(link) ?? 1) - 1));
    };
  }
}
