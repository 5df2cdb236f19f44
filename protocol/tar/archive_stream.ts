/**
 * The readable side of an archive being written: nothing is packed before a consumer reads, and a consumer that
 * cancels aborts the archive. Both packers (the controller's, from paths; the daemon's, from directory
 * descriptors) hand out their archive this way.
 *
 * @module
 */

import type { TarWriter } from "./tar.ts";

/** Options of {@linkcode archiveStream}. */
export interface ArchiveStreamOptions {
  /** Fills the archive: adds every entry, then closes `tar` (or aborts it on failure). Starts on the first read. */
  write: () => Promise<void>;
  /** Called first when the consumer cancels; `started` says whether `write` had begun. @default none */
  onCancel?: (started: boolean) => void;
}

/**
 * A byte stream of `tar`'s archive, filled by `options.write` from the first read on.
 *
 * @example Stream an archive of one file
 * ```ts
 * import { archiveStream, TarWriter } from "./mod.ts";
 *
 * const tar = new TarWriter();
 * const stream = archiveStream(tar, {
 *   write: async () => {
 *     await tar.addEntry({ path: "a.txt", type: "file", size: 1, mode: 0o644, mtime: 0 }, new Uint8Array([65]));
 *     await tar.close();
 *   },
 * });
 * const bytes = new Uint8Array(await new Response(stream).arrayBuffer());
 * console.assert(bytes.length % 512 === 0);
 * ```
 *
 * @param tar The archive writer.
 * @param options What fills it, and what a cancel also does.
 * @returns The archive's bytes, pulled on demand.
 */
export function archiveStream(
  tar: TarWriter,
  options: ArchiveStreamOptions,
): ReadableStream<Uint8Array> {
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  let done: Promise<void> = Promise.resolve();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (reader === undefined) {
        reader = tar.readable.getReader();
        done = options.write();
      }
      const { done: end, value } = await reader.read();
      if (end) {
        await done;
        controller.close();
      } else {
        controller.enqueue(value);
      }
    },
    async cancel(reason) {
      options.onCancel?.(reader !== undefined);
      if (reader === undefined) {
        await tar.abort(reason);
        return;
      }
      await reader.cancel(reason);
      await done;
    },
  }, { highWaterMark: 0 });
}
