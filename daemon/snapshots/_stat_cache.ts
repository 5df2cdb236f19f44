/**
 * The digests of files already snapshotted, so that a later snapshot of an unchanged file neither reads nor hashes
 * it again.
 *
 * @module
 */

/** Most entries {@linkcode StatCache} keeps (the oldest are dropped beyond). */
const MAX_CACHED = 500_000;

/**
 * Digests of files snapshotted before, by identity (device, inode), size and status change time, so an unchanged
 * file is not read and hashed again (as git's index does). The change time (`ctime`) is set by the kernel on every
 * write and cannot be set back; a file changed within the kernel's timestamp granularity of being read could keep
 * its ctime, so files whose ctime is less than {@linkcode StatCache.SETTLE_MS} old when read are not cached.
 * In memory only: a restarted daemon hashes everything once more.
 */
export class StatCache {
  /** How old a change must be (ms) before a file's digest is trusted for later snapshots. */
  static readonly SETTLE_MS = 2_000;
  readonly #map = new Map<string, string>();

  static key(id: string, size: number, ctime: string): string {
    return `${id}|${size}|${ctime}`;
  }

  get(key: string): string | undefined {
    return this.#map.get(key);
  }

  /** Remember `hash` for `key` when the change time `ctime` (`seconds.nanoseconds`) is settled at `now` (ms). */
  set(key: string, hash: string, ctime: string, now: number): void {
    if (Number(ctime) * 1000 > now - StatCache.SETTLE_MS) return;
    this.#map.delete(key);
    this.#map.set(key, hash);
    if (this.#map.size > MAX_CACHED) this.#map.delete(this.#map.keys().next().value!);
  }
}
