/**
 * Streaming tar (POSIX ustar with PAX extended headers), the archive format of directory transfers
 * (`upload`/`download` with `archive: "tar"`).
 *
 * - `tar.ts`: the codec. {@linkcode TarWriter} turns entries into a byte stream with backpressure;
 *   {@linkcode readTar} turns a byte stream into entries. Pure: no Deno I/O.
 * - `tar_fs.ts`: {@linkcode packDirectory} and {@linkcode unpackTar}, between a directory tree and a tar stream.
 *   This is the one place in `protocol/` that touches the file system (through `Deno.*`), because the controller
 *   (`downloadDir`, `uploadDir`) and the daemon share it. Modes are masked to 0o777 on unpacking: no setuid,
 *   setgid or sticky bit ever comes from an archive.
 *
 * Proposed home once the daemon unpacks relative to directory descriptors (the security issue): the
 * controller's local pack/unpack moves to `server/`, the daemon's to `daemon/`, and this folder keeps only the
 * codec, so `@sandd/protocol` has no I/O at all.
 *
 * @example Round trip one file through the codec
 * ```ts
 * import { readTar, TarWriter } from "./mod.ts";
 * const writer = new TarWriter();
 * const reading = (async () => {
 *   const names: string[] = [];
 *   for await (const entry of readTar(writer.readable)) {
 *     names.push(String(entry.header.path));
 *     await entry.body.cancel();
 *   }
 *   return names;
 * })();
 * const body = new TextEncoder().encode("hi");
 * await writer.addEntry({ path: "a.txt", type: "file", size: 2, mode: 0o644, mtime: 0 }, body);
 * await writer.close();
 * console.assert((await reading)[0] === "a.txt");
 * ```
 *
 * @module
 */

export { archiveStream, type ArchiveStreamOptions } from "./archive_stream.ts";
export {
  readTar,
  type ReadTarOptions,
  type TarEntry,
  type TarEntryHeader,
  type TarEntryType,
  TarFormatError,
  TarWriter,
} from "./tar.ts";
export {
  packDirectory,
  type PackOptions,
  TarPackError,
  TarPathError,
  type UnpackOptions,
  type UnpackResult,
  unpackTar,
} from "./tar_fs.ts";
