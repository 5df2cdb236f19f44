/**
 * Workspace snapshots of a worker, controller side: `server.snapshots(id)` (and, once wired, `w.snapshots` on a
 * worker handle). A snapshot is taken by the daemon into its own content-addressed store (`--state-dir`): every
 * distinct file content is stored once, across snapshots, so a second snapshot of a tree with one changed file
 * stores about one file. Modes, symlinks (as links), empty directories and any UTF-8 name are kept; restores are
 * verified (each blob's SHA-256) and atomic (built beside the destination, renamed into place). `--root` confines
 * the snapshotted directory and the restore destination like every file operation.
 *
 * Beyond one worker: {@linkcode Snapshots.copyTo} sends a snapshot to another worker with only the blobs it
 * lacks; {@linkcode Snapshots.export} and {@linkcode Snapshots.import} move one as a tar stream through the
 * controller. Every call is audited (`snapshot.create`, `snapshot.restore`, ...).
 *
 * @module
 */

import type { ResponseData } from "@sandd/protocol/replies";
import { MAX_SNAPSHOT_HAS } from "@sandd/protocol/snapshots";
import type { Auditor } from "./_audited.ts";
import type { Connection } from "./_connection.ts";
import { checkDaemonId } from "./_validate.ts";
import { receiveStream, sendStream } from "./_snapshot_streams.ts";

/** What describes a snapshot. */
export interface SnapshotInfo {
  /** The snapshot id (chosen by the daemon; sorts by creation time). */
  id: string;
  /** When it was taken. */
  createdAt: Date;
  /** The message given at creation (`""` when none). */
  message: string;
  /** The tags given at creation. */
  tags: string[];
  /** Regular files. */
  fileCount: number;
  /** Directories, the top one not counted. */
  dirCount: number;
  /** Symlinks. */
  symlinkCount: number;
  /** Sum of the files' sizes, in bytes. */
  totalSize: number;
}

/** What {@linkcode Snapshots.create} returns: the snapshot and what it added to the store. */
export interface SnapshotCreated extends SnapshotInfo {
  /** Blobs (distinct file contents) the store did not have before. */
  newBlobs: number;
  /** Bytes of those blobs: what the snapshot cost in space. */
  newBytes: number;
}

/** Options of {@linkcode Snapshots.create} and {@linkcode Snapshots.import}. */
export interface SnapshotCreateOptions {
  /** A message (at most 4,096 characters). @default "" */
  message?: string;
  /** Tags (at most 64, each 1 to 128 characters). @default [] */
  tags?: string[];
}

/** Options of {@linkcode Snapshots.restore}. */
export interface SnapshotRestoreOptions {
  /**
   * Replace an existing destination (file, symlink or directory) in one rename. Without it an existing
   * destination is refused with a `FileError` `EEXIST`.
   *
   * @default false
   */
  overwrite?: boolean;
}

/** What a restore wrote. */
export interface SnapshotRestoreResult {
  /** Regular files. */
  fileCount: number;
  /** Directories (the top one not counted). */
  dirCount: number;
  /** Symlinks. */
  symlinkCount: number;
  /** Bytes of file content. */
  totalSize: number;
}

/** Options of {@linkcode Snapshots.list}. */
export interface SnapshotListOptions {
  /** Only snapshots carrying every one of these tags. @default [] */
  tags?: string[];
}

/** What {@linkcode Snapshots.delete} freed. */
export interface SnapshotDeleteResult {
  /** Blobs no other snapshot used, now removed. */
  freedBlobs: number;
  /** Their bytes. */
  freedBytes: number;
}

/** What {@linkcode Snapshots.copyTo} did. */
export interface SnapshotCopyResult {
  /** The snapshot id (the same on both workers). */
  id: string;
  /** Distinct blobs the snapshot names. */
  blobs: number;
  /** Blobs the target lacked and that were sent. */
  blobsSent: number;
  /** Bytes of those blobs. */
  bytesSent: number;
}

/** @internal What `Server` gives the snapshot handle. */
export interface SnapshotHost {
  /** The live connection to a daemon; throws `DaemonNotFoundError`. */
  connection(id: string): Connection;
  /** The audit wrapper. */
  auditor: Auditor;
}

function checkString(name: string, value: unknown): asserts value is string {
  if (typeof value !== "string" || value === "" || value.includes("\0")) {
    throw new TypeError(
      `${name} must be a non-empty string without NUL, got ${JSON.stringify(value)}`,
    );
  }
}

function checkTags(tags: unknown): void {
  if (tags === undefined) return;
  if (
    !Array.isArray(tags) || tags.length > 64 ||
    tags.some((t) => typeof t !== "string" || t.length === 0 || t.length > 128)
  ) {
    throw new TypeError(
      `tags must be an array of at most 64 strings of 1 to 128 characters, got ${
        JSON.stringify(tags)
      }`,
    );
  }
}

function checkCreate(options: SnapshotCreateOptions): void {
  if (
    options.message !== undefined &&
    (typeof options.message !== "string" || options.message.length > 4096)
  ) {
    throw new TypeError(`message must be a string of at most 4096 characters`);
  }
  checkTags(options.tags);
}

function toInfo(data: ResponseData<"snapshotGet">): SnapshotInfo {
  return {
    id: data.id,
    createdAt: new Date(data.createdAt),
    message: data.message,
    tags: [...data.tags],
    fileCount: data.fileCount,
    dirCount: data.dirCount,
    symlinkCount: data.symlinkCount,
    totalSize: data.totalSize,
  };
}

/** The blob digests a manifest names (the file lines' `sha256`), distinct. */
function manifestBlobs(bytes: Uint8Array): string[] {
  const out = new Set<string>();
  const lines = new TextDecoder().decode(bytes).split("\n");
  for (let i = 1; i < lines.length; i++) {
    if (lines[i] === "") continue;
    const entry = JSON.parse(lines[i]!) as { type?: string; sha256?: unknown };
    if (entry.type !== "file") continue;
    if (typeof entry.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(entry.sha256)) {
      throw new TypeError(
        `The source worker sent a manifest with a bad blob digest on line ${i + 1}`,
      );
    }
    out.add(entry.sha256);
  }
  return [...out];
}

async function bytesOf(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * The workspace snapshots of one worker. Get it with `server.snapshots(id)`; every call goes to the daemon's
 * current link.
 *
 * @example Snapshot a workspace, break it, restore it
 * ```ts ignore
 * const snaps = server.snapshots("worker-1");
 * const snap = await snaps.create("/work/repo", { message: "before the refactor", tags: ["green"] });
 * await server.exec("worker-1", "rm -rf /work/repo/src");
 * await snaps.restore(snap.id, "/work/repo", { overwrite: true });
 * const latest = await snaps.findByTag("green");
 * await snaps.copyTo("worker-2", snap.id); // sends only the blobs worker-2 lacks
 * ```
 */
export class Snapshots {
  /** The daemon. */
  readonly daemonId: string;
  readonly #host: SnapshotHost;

  /**
   * @internal Use `server.snapshots(id)`.
   *
   * @param host The server's connections and audit wrapper.
   * @param daemonId The daemon.
   */
  constructor(host: SnapshotHost, daemonId: string) {
    checkDaemonId(daemonId);
    this.#host = host;
    this.daemonId = daemonId;
  }

  #conn(id = this.daemonId): Connection {
    return this.#host.connection(id);
  }

  /**
   * Snapshot a directory on the worker into its store.
   *
   * @param dir Directory on the worker.
   * @param options Message and tags.
   * @returns The snapshot, and what it added to the store.
   * @throws {FileError} `ENOENT`, `ENOTDIR`, `EACCES`... with the path; `EAGAIN` (a `RemoteError`) when the tree
   *   changed under the walk in a way that could lead outside it (a directory swapped for a symlink).
   * @throws {PolicyError} Outside `--root`, through a symlink, `--no-files`.
   */
  create(dir: string, options: SnapshotCreateOptions = {}): Promise<SnapshotCreated> {
    return this.#host.auditor.run(
      "snapshot.create",
      this.daemonId,
      { path: String(dir) },
      async () => {
        checkString("dir", dir);
        checkCreate(options);
        const data = await this.#conn().request("snapshotCreate", {
          path: dir,
          ...(options.message !== undefined ? { message: options.message } : {}),
          ...(options.tags !== undefined ? { tags: options.tags } : {}),
        });
        return { ...toInfo(data), newBlobs: data.newBlobs, newBytes: data.newBytes };
      },
      (r) => ({ bytes: r.newBytes }),
    );
  }

  /**
   * Restore a snapshot as the directory `dest` on the worker: built beside it, every blob verified, then renamed
   * into place; on any failure nothing is left and `dest` is untouched.
   *
   * @param id Snapshot id.
   * @param dest Destination directory on the worker (its parent must exist).
   * @param options Whether to replace an existing destination.
   * @returns What was written.
   * @throws {FileError} `EEXIST` (without `overwrite`), `ENOENT` (no such snapshot, no parent), `EINTEGRITY`
   *   (a corrupt or missing blob).
   */
  restore(
    id: string,
    dest: string,
    options: SnapshotRestoreOptions = {},
  ): Promise<SnapshotRestoreResult> {
    return this.#host.auditor.run(
      "snapshot.restore",
      this.daemonId,
      { path: String(dest) },
      async () => {
        checkString("id", id);
        checkString("dest", dest);
        if (options.overwrite !== undefined && typeof options.overwrite !== "boolean") {
          throw new TypeError(`overwrite must be a boolean, got ${typeof options.overwrite}`);
        }
        const data = await this.#conn().request("snapshotRestore", {
          id,
          path: dest,
          ...(options.overwrite ? { overwrite: true } : {}),
        });
        return { ...data };
      },
      (r) => ({ bytes: r.totalSize }),
    );
  }

  /**
   * The worker's snapshots, newest first.
   *
   * @param options Tags every listed snapshot must carry.
   * @returns Their descriptions.
   */
  list(options: SnapshotListOptions = {}): Promise<SnapshotInfo[]> {
    return this.#host.auditor.run("snapshot.list", this.daemonId, {}, async () => {
      checkTags(options.tags);
      const data = await this.#conn().request("snapshotList", {
        ...(options.tags !== undefined ? { tags: options.tags } : {}),
      });
      return data.snapshots.map(toInfo);
    });
  }

  /**
   * The newest snapshot carrying `tag`.
   *
   * @param tag The tag.
   * @returns It, or `undefined` when none carries the tag.
   */
  async findByTag(tag: string): Promise<SnapshotInfo | undefined> {
    checkString("tag", tag);
    return (await this.list({ tags: [tag] }))[0];
  }

  /**
   * One snapshot.
   *
   * @param id Snapshot id.
   * @returns Its description.
   * @throws {FileError} `ENOENT` when the worker has no such snapshot.
   */
  get(id: string): Promise<SnapshotInfo> {
    return this.#host.auditor.run("snapshot.get", this.daemonId, { path: String(id) }, async () => {
      checkString("id", id);
      return toInfo(await this.#conn().request("snapshotGet", { id }));
    });
  }

  /**
   * Delete a snapshot and free the blobs no other snapshot uses.
   *
   * @param id Snapshot id.
   * @returns What was freed.
   * @throws {FileError} `ENOENT` when the worker has no such snapshot.
   */
  delete(id: string): Promise<SnapshotDeleteResult> {
    return this.#host.auditor.run(
      "snapshot.delete",
      this.daemonId,
      { path: String(id) },
      async () => {
        checkString("id", id);
        return { ...await this.#conn().request("snapshotDelete", { id }) };
      },
      (r) => ({ bytes: r.freedBytes }),
    );
  }

  /**
   * Copy a snapshot to another worker, sending only the blobs it lacks (asked with `snapshotHas`), then its
   * manifest; the snapshot keeps its id there. Copying a snapshot the target has already sends nothing but the
   * manifest.
   *
   * @param otherDaemonId The target worker.
   * @param id Snapshot id on this worker.
   * @returns How many blobs were sent.
   */
  copyTo(otherDaemonId: string, id: string): Promise<SnapshotCopyResult> {
    return this.#host.auditor.run("snapshot.copy", this.daemonId, {
      path: String(id),
      to: String(otherDaemonId),
    }, async () => {
      checkDaemonId(otherDaemonId);
      checkString("id", id);
      if (otherDaemonId === this.daemonId) {
        throw new TypeError(`copyTo needs another worker, got this one ('${otherDaemonId}')`);
      }
      const source = this.#conn();
      const target = this.#conn(otherDaemonId);
      const { readable } = await receiveStream(
        source,
        "snapshotExport",
        { id, format: "manifest" },
        `manifest of snapshot '${id}'`,
      );
      const manifest = await bytesOf(readable);
      const blobs = manifestBlobs(manifest);
      const missing: string[] = [];
      for (let at = 0; at < blobs.length; at += MAX_SNAPSHOT_HAS) {
        const data = await target.request("snapshotHas", {
          blobs: blobs.slice(at, at + MAX_SNAPSHOT_HAS),
        });
        missing.push(...data.missing);
      }
      let bytesSent = 0;
      for (const sha256 of missing) {
        const { reply, readable: blob } = await receiveStream(
          source,
          "snapshotBlobGet",
          { sha256 },
          `blob ${sha256}`,
        );
        const put = await sendStream(target, "snapshotBlobPut", { sha256, size: reply.size }, blob);
        bytesSent += put.bytes;
      }
      await sendStream(
        target,
        "snapshotImport",
        { format: "manifest" },
        ReadableStream.from([manifest]),
      );
      return { id, blobs: blobs.length, blobsSent: missing.length, bytesSent };
    }, (r) => ({ bytes: r.bytesSent }));
  }

  /**
   * A snapshot as a tar stream (ustar with PAX headers: directories, files, symlinks as links), read from the
   * worker's store as the stream is read; each blob's SHA-256 is checked on the worker, and the stream's on the
   * controller (the stream errors on a mismatch). Resolves once the worker has the snapshot open.
   *
   * @param id Snapshot id.
   * @returns The archive.
   * @throws {FileError} `ENOENT` when the worker has no such snapshot.
   */
  export(id: string): Promise<ReadableStream<Uint8Array>> {
    return this.#host.auditor.run(
      "snapshot.export",
      this.daemonId,
      { path: String(id) },
      async () => {
        checkString("id", id);
        const { readable } = await receiveStream(this.#conn(), "snapshotExport", {
          id,
          format: "tar",
        }, `export of snapshot '${id}'`);
        return readable;
      },
    );
  }

  /**
   * Make a snapshot on the worker from a tar stream (such as {@linkcode Snapshots.export} produced, on this or
   * another worker): every file is stored as a blob as it streams (content the store has is not stored twice).
   * Entry paths are checked (no absolute paths or `..`); missing parent directories are added.
   *
   * @param stream The archive.
   * @param options Message and tags of the new snapshot.
   * @returns The new snapshot (a new id).
   * @throws {RemoteError} `TAR_FORMAT`, `TAR_PATH_INVALID` for a bad archive.
   */
  import(
    stream: ReadableStream<Uint8Array>,
    options: SnapshotCreateOptions = {},
  ): Promise<SnapshotInfo> {
    return this.#host.auditor.run("snapshot.import", this.daemonId, {}, async () => {
      if (!(stream instanceof ReadableStream)) {
        throw new TypeError(`stream must be a ReadableStream, got ${typeof stream}`);
      }
      checkCreate(options);
      return toInfo(
        await sendStream(this.#conn(), "snapshotImport", {
          format: "tar",
          ...(options.message !== undefined ? { message: options.message } : {}),
          ...(options.tags !== undefined ? { tags: options.tags } : {}),
        }, stream),
      );
    }, (r) => ({ bytes: r.totalSize }));
  }
}
