/**
 * A snapshot as a tar archive, both ways: exported from its manifest and blobs (each blob's SHA-256 checked as it
 * streams; a corrupt blob aborts the archive), and imported from an archive into the store (each file hashed into
 * a blob as it streams, a new manifest written once every blob is on disk). Entry paths of an imported archive are
 * checked like any manifest's (relative, no `..`); missing parent directories are added (mode 0o755).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { archiveStream, readTar, TarWriter } from "../_tar.ts";
import { closeFd, pread } from "../ffi/fs.ts";
import { DaemonRequestError } from "../process_table.ts";
import { type Manifest, type ManifestEntry, pathParts } from "./_manifest.ts";
import { type BlobBatch, CHUNK, type SnapshotStore } from "./store.ts";

/** A blob's bytes as a stream, its digest checked at the end (the stream errors on a mismatch). */
export function blobStream(
  store: SnapshotStore,
  hash: string,
  path: string,
): ReadableStream<Uint8Array> {
  const blob = store.openBlob(hash);
  const digest = createHash("sha256");
  let offset = 0;
  let closed = false;
  const close = () => {
    if (!closed) closeFd(blob.fd);
    closed = true;
  };
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      try {
        const buffer = new Uint8Array(CHUNK);
        const n = pread(blob.fd, buffer, offset);
        if (n === 0) {
          close();
          const actual = digest.digest("hex");
          if (actual !== hash) {
            throw new DaemonRequestError(
              "EINTEGRITY",
              `Snapshot blob ${hash} of '${path}' is corrupt: its SHA-256 is ${actual}`,
            );
          }
          controller.close();
          return;
        }
        const piece = buffer.subarray(0, n);
        digest.update(piece);
        offset += n;
        controller.enqueue(piece);
      } catch (error) {
        close();
        throw error;
      }
    },
    cancel: close,
  }, { highWaterMark: 0 });
}

/** The snapshot's tree as a tar archive (directories, files, symlinks; the top directory itself is not an entry). */
export function exportTar(store: SnapshotStore, manifest: Manifest): ReadableStream<Uint8Array> {
  const tar = new TarWriter();
  return archiveStream(tar, {
    write: async () => {
      try {
        for (const entry of manifest.entries) {
          if (entry.type === "dir") {
            await tar.addEntry({
              path: entry.path,
              type: "directory",
              size: 0,
              mode: entry.mode,
              mtime: entry.mtime / 1000,
            });
          } else if (entry.type === "symlink") {
            await tar.addEntry({
              path: entry.path,
              type: "symlink",
              size: 0,
              mode: 0o777,
              mtime: manifest.header.mtime / 1000,
              linkTarget: entry.target,
            });
          } else {
            const body = blobStream(store, entry.sha256, entry.path);
            await tar.addEntry({
              path: entry.path,
              type: "file",
              size: entry.size,
              mode: entry.mode,
              mtime: entry.mtime / 1000,
            }, body);
          }
        }
        await tar.close();
      } catch (error) {
        await tar.abort(error);
      }
    },
  });
}

/** Read an archive into the store's batch: the manifest entries (every blob stored or known). */
export async function importTar(
  stream: ReadableStream<Uint8Array>,
  batch: BlobBatch,
): Promise<ManifestEntry[]> {
  const entries: ManifestEntry[] = [];
  const index = new Map<string, number>();
  const now = Date.now();
  const ensureParents = (parts: string[]) => {
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join("/");
      const at = index.get(parent);
      if (at === undefined) {
        index.set(parent, entries.length);
        entries.push({ path: parent, type: "dir", mode: 0o755, mtime: now });
      } else if (entries[at]!.type !== "dir") {
        throw new DaemonRequestError(
          "TAR_PATH_INVALID",
          `Tar entry path ${
            JSON.stringify(parts.join("/"))
          } needs a directory where the archive has a ${entries[at]!.type}`,
        );
      }
    }
  };
  for await (const { header, body } of readTar(stream)) {
    let parts: string[];
    try {
      if (typeof header.path !== "string") {
        throw new DaemonRequestError("TAR_PATH_INVALID", "A tar entry path is not valid UTF-8");
      }
      const cleaned = header.path.split("/").filter((p) => p !== "" && p !== ".").join("/");
      if (cleaned === "" && header.type === "directory") {
        await body.cancel();
        continue; // the top directory
      }
      parts = pathParts(cleaned, `tar entry ${JSON.stringify(header.path)}`);
      ensureParents(parts);
    } catch (error) {
      await body.cancel(error).catch(() => {});
      throw error;
    }
    const path = parts.join("/");
    const existing = index.get(path);
    if (
      existing !== undefined && !(header.type === "directory" && entries[existing]!.type === "dir")
    ) {
      await body.cancel().catch(() => {});
      throw new DaemonRequestError(
        "TAR_PATH_INVALID",
        `Tar entry path ${JSON.stringify(path)} appears twice`,
      );
    }
    const mtime = Math.round(header.mtime * 1000);
    if (header.type === "directory") {
      await body.cancel();
      const entry: ManifestEntry = { path, type: "dir", mode: header.mode & 0o7777, mtime };
      if (existing !== undefined) entries[existing] = entry;
      else {
        index.set(path, entries.length);
        entries.push(entry);
      }
    } else if (header.type === "symlink") {
      await body.cancel();
      const target = header.linkTarget;
      if (typeof target !== "string" || target === "" || target.includes("\0")) {
        throw new DaemonRequestError(
          "TAR_PATH_INVALID",
          `Tar symlink ${JSON.stringify(path)} has a target that cannot be stored`,
        );
      }
      index.set(path, entries.length);
      entries.push({ path, type: "symlink", target });
    } else {
      const writer = batch.writer();
      try {
        for await (const chunk of body) writer.write(chunk);
        const { hash } = writer.finish();
        index.set(path, entries.length);
        entries.push({
          path,
          type: "file",
          mode: header.mode & 0o7777,
          size: writer.size,
          mtime,
          sha256: hash,
        });
      } catch (error) {
        writer.discard();
        throw error;
      }
    }
  }
  return entries;
}
