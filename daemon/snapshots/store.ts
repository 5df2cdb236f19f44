/**
 * The content-addressed snapshot store in the daemon's state directory:
 *
 * ```text
 * STATE_DIR/                      0700
 *   snapshots/
 *     blobs/00 … blobs/ff/        one file per distinct content, named by its SHA-256 (fan-out by the first byte)
 *     manifests/ID.jsonl          one per snapshot (see _manifest.ts)
 *     tmp/                        blobs being written (and manifests where the file system has no O_TMPFILE)
 * ```
 *
 * Crash safety comes from the order of writes, each step atomic: a blob is written under a temporary name in
 * `tmp/`; once a snapshot has written all its blobs, the file system is flushed once (`syncfs`, instead of an
 * `fsync` per file: thousands of those cost seconds), the blobs are renamed to their digests and the file system
 * flushed again; only then is the manifest written (to an unnamed file), flushed and named. A daemon killed at any point therefore leaves at
 * most blobs no manifest names (orphans) and never a manifest naming a missing blob. Orphans (and temporary
 * files) are removed when the store is first opened by a daemon. A deletion removes the manifest first, then the
 * blobs no remaining manifest names, so a crash in between also leaves only orphans.
 *
 * The store is the daemon's own directory: it is never reached through the controller's paths, and it must not
 * lie beneath `--root` (the handlers refuse snapshots then). One daemon per state directory.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { join } from "node:path";
import {
  AT,
  closeFd,
  fchmod,
  FsError,
  fstat,
  fstatAt,
  fsync,
  linkFd,
  mkdirAt,
  O,
  openAt,
  pread,
  readDirFd,
  renameAt,
  syncFs,
  unlinkAt,
  writeAll,
} from "../ffi/fs.ts";
import { DaemonRequestError } from "../process_table.ts";
import { RwLock } from "./_lock.ts";
import { StatCache } from "./_stat_cache.ts";
import { checkHeader, type Manifest, parse, serialize, type SnapshotHeader } from "./_manifest.ts";

/** Up to this many new blobs are flushed one by one; more with one `syncfs`. */
const FEW_BLOBS = 64;
/** Read size for blobs and manifests. */
export const CHUNK = 256 * 1024;

const HEX = /^[0-9a-f]{64}$/;
const MANIFEST_NAME = /^([A-Za-z0-9][A-Za-z0-9_.-]{0,127})\.jsonl$/;

function blobName(hash: string): string {
  return `${hash.slice(0, 2)}/${hash}`;
}

function isMissing(error: unknown): boolean {
  return error instanceof FsError && error.code === "ENOENT";
}

/** The blobs one snapshot adds: written under pending names, made durable and named by {@linkcode BlobBatch.sync}. */
export class BlobBatch {
  readonly #store: SnapshotStore;
  /** Blobs of this batch already written, by digest: their pending names. */
  readonly #pending = new Map<string, string>();
  /** Blobs this batch stored that the store did not have. */
  newBlobs = 0;
  /** Their bytes. */
  newBytes = 0;

  constructor(store: SnapshotStore) {
    this.#store = store;
  }

  /** Whether the blob is in the store or written by this batch. */
  has(hash: string): boolean {
    return this.#pending.has(hash) || this.#store.hasBlob(hash);
  }

  /**
   * Store `bytes` (a whole small file) unless the store has them.
   *
   * @returns Their SHA-256.
   */
  addBytes(bytes: Uint8Array): string {
    const hash = createHash("sha256").update(bytes).digest("hex");
    if (this.has(hash)) return hash;
    const temp = this.#store.blobFile();
    try {
      writeAll(temp.fd, bytes);
    } catch (error) {
      temp.discard();
      throw error;
    }
    this.#add(temp, hash, bytes.length);
    return hash;
  }

  /** Start a blob written piece by piece, hashed as it goes. */
  writer(): BlobWriter {
    return new BlobWriter(this.#store.blobFile(), (temp, hash, size) => {
      if (this.has(hash)) {
        temp.discard();
        return false;
      }
      this.#add(temp, hash, size);
      return true;
    });
  }

  #add(temp: TempFile, hash: string, size: number): void {
    this.#pending.set(hash, this.#store.stage(temp));
    this.newBlobs++;
    this.newBytes += size;
  }

  /** Make every blob of the batch durable under its digest (flush, rename, flush). */
  async sync(): Promise<void> {
    if (this.#pending.size === 0) return;
    if (this.#pending.size > FEW_BLOBS) {
      await this.#store.flush();
      for (const [hash, pending] of this.#pending) this.#store.publish(pending, hash);
      this.#pending.clear();
      await this.#store.flush();
      return;
    }
    // A few blobs (a snapshot after small changes, one copied blob): flush just them, not the file system (which
    // may hold gigabytes of others' unwritten data).
    await Promise.all(
      [...this.#pending.values()].map((pending) => this.#store.flushBlobFile(pending)),
    );
    const dirs = new Set<string>();
    for (const [hash, pending] of this.#pending) {
      this.#store.publish(pending, hash);
      dirs.add(hash.slice(0, 2));
    }
    this.#pending.clear();
    await Promise.all([...dirs].map((dir) => this.#store.flushBlobDir(dir)));
  }

  /** Give up: remove the pending blobs (a crash leaves them to the next open). */
  abandon(): void {
    for (const pending of this.#pending.values()) this.#store.unstage(pending);
    this.#pending.clear();
  }
}

/** A new unnamed (or temporarily named) file in the store. */
export interface TempFile {
  /** Its descriptor. */
  fd: number;
  /** Its temporary name in `tmp/`, or null when it has none (`O_TMPFILE`). */
  name: string | null;
  /** Close and remove it. */
  discard(): void;
}

/** A blob written in pieces: {@linkcode BlobWriter.write}, then {@linkcode BlobWriter.finish} or `discard`. */
export class BlobWriter {
  readonly #temp: TempFile;
  readonly #hash: Hash = createHash("sha256");
  readonly #done: (temp: TempFile, hash: string, size: number) => boolean;
  #size = 0;
  #finished = false;

  constructor(
    temp: TempFile,
    done: (temp: TempFile, hash: string, size: number) => boolean,
  ) {
    this.#temp = temp;
    this.#done = done;
  }

  /** Bytes written so far. */
  get size(): number {
    return this.#size;
  }

  /** Append bytes. */
  write(bytes: Uint8Array): void {
    writeAll(this.#temp.fd, bytes);
    this.#hash.update(bytes);
    this.#size += bytes.length;
  }

  /**
   * Store the blob (or drop it when the store has it already).
   *
   * @param expected When given, the digest the bytes must have (`EINTEGRITY` otherwise, nothing stored).
   * @returns Its digest, and whether it was stored now.
   */
  finish(expected?: string): { hash: string; stored: boolean } {
    this.#finished = true;
    const hash = this.#hash.digest("hex");
    if (expected !== undefined && expected !== hash) {
      this.#temp.discard();
      throw new DaemonRequestError(
        "EINTEGRITY",
        `Blob content has SHA-256 ${hash}, not the announced ${expected}`,
      );
    }
    return { hash, stored: this.#done(this.#temp, hash, this.#size) };
  }

  /** Drop the bytes written (idempotent; does nothing after `finish`). */
  discard(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#temp.discard();
  }
}

/** The store. Open it (lazily, once) before use; see the module documentation for the layout. */
export class SnapshotStore {
  /** The store directory (`STATE_DIR/snapshots`). */
  readonly path: string;
  /** The state directory. */
  readonly stateDir: string;
  /** Shared by snapshot operations, held alone by deletions. */
  readonly lock: RwLock = new RwLock();
  /** Digests of unchanged files from earlier snapshots. */
  readonly statCache: StatCache = new StatCache();
  #fds: { blobs: number; manifests: number; tmp: number } | null = null;
  #opening: Promise<void> | null = null;
  #tmpfile = true;

  /**
   * @param stateDir The daemon's state directory (created 0700 on first use).
   */
  constructor(stateDir: string) {
    this.stateDir = stateDir;
    this.path = join(stateDir, "snapshots");
  }

  /** Create the layout if missing and clean up after a crash (temporary files, orphan blobs). Once. */
  open(): Promise<void> {
    this.#opening ??= this.lock.exclusive(async () => {
      Deno.mkdirSync(this.stateDir, { recursive: true, mode: 0o700 });
      const fds = { blobs: -1, manifests: -1, tmp: -1 };
      const store = this.#dir(AT.FDCWD, this.path);
      try {
        fds.blobs = this.#dir(store, "blobs");
        fds.manifests = this.#dir(store, "manifests");
        fds.tmp = this.#dir(store, "tmp");
        for (let i = 0; i < 256; i++) {
          closeFd(this.#dir(fds.blobs, i.toString(16).padStart(2, "0")));
        }
      } catch (error) {
        closeFd(fds.blobs);
        closeFd(fds.manifests);
        closeFd(fds.tmp);
        throw error;
      } finally {
        closeFd(store);
      }
      this.#fds = fds;
      for (const entry of readDirFd(fds.tmp)) unlinkAt(fds.tmp, entry.raw);
      await this.#collectOrphans();
    });
    this.#opening.catch(() => this.#opening = null);
    return this.#opening;
  }

  /** Open (creating, 0700) the directory `name` in `dirFd`. */
  #dir(dirFd: number, name: string): number {
    try {
      mkdirAt(dirFd, name, 0o700);
    } catch (error) {
      if (!(error instanceof FsError) || error.code !== "EEXIST") throw error;
    }
    return openAt(dirFd, name, O.RDONLY | O.DIRECTORY);
  }

  get #open(): { blobs: number; manifests: number; tmp: number } {
    if (this.#fds === null) throw new Error("The snapshot store is not open");
    return this.#fds;
  }

  /** Remove blobs no manifest names (left by a crash). Skipped when a manifest cannot be read. */
  async #collectOrphans(): Promise<void> {
    let referenced: Set<string>;
    try {
      referenced = this.referencedBlobs();
    } catch {
      return; // never free blobs on the word of a manifest that cannot be read
    }
    const { blobs } = this.#open;
    for (let i = 0; i < 256; i++) {
      const dir = i.toString(16).padStart(2, "0");
      const fd = openAt(blobs, dir, O.RDONLY | O.DIRECTORY);
      try {
        for (const entry of readDirFd(fd)) {
          if (!HEX.test(entry.name) || !referenced.has(entry.name)) unlinkAt(fd, entry.raw);
        }
      } finally {
        closeFd(fd);
      }
      if (i % 32 === 31) await new Promise((r) => setTimeout(r, 0));
    }
  }

  /** Every blob some manifest names. */
  referencedBlobs(except?: string): Set<string> {
    const out = new Set<string>();
    for (const id of this.ids()) {
      if (id === except) continue;
      for (const entry of this.readManifest(id).entries) {
        if (entry.type === "file") out.add(entry.sha256);
      }
    }
    return out;
  }

  /** A new file for a blob or manifest, unnamed where the file system allows. */
  tempFile(dirFd = this.#open.tmp): TempFile {
    if (this.#tmpfile) {
      try {
        const fd = openAt(dirFd, ".", O.TMPFILE | O.RDWR, 0o600);
        return { fd, name: null, discard: () => closeFd(fd) };
      } catch (error) {
        const code = (error as FsError).code;
        if (code !== "EOPNOTSUPP" && code !== "EISDIR" && code !== "EINVAL") throw error;
        this.#tmpfile = false;
      }
    }
    const tmp = this.#open.tmp;
    const name = `t-${crypto.randomUUID()}`;
    const fd = openAt(tmp, name, O.RDWR | O.CREAT | O.EXCL | O.NOFOLLOW, 0o600);
    return {
      fd,
      name,
      discard: () => {
        closeFd(fd);
        try {
          unlinkAt(tmp, name);
        } catch {
          // gone already
        }
      },
    };
  }

  /** A new blob file under a temporary name in `tmp/` (read-only once closed; removed at the next open if left). */
  blobFile(): TempFile {
    const tmp = this.#open.tmp;
    const name = `t-${crypto.randomUUID()}`;
    const fd = openAt(tmp, name, O.RDWR | O.CREAT | O.EXCL | O.NOFOLLOW, 0o444);
    return {
      fd,
      name,
      discard: () => {
        closeFd(fd);
        this.unstage(name);
      },
    };
  }

  /** Close a written blob file, keeping it under its temporary name until {@linkcode SnapshotStore.publish}. */
  stage(temp: TempFile): string {
    closeFd(temp.fd);
    return temp.name!;
  }

  /** Rename a flushed blob file to its digest (an existing blob of that name is the same bytes). */
  publish(pending: string, hash: string): void {
    renameAt(this.#open.tmp, pending, this.#open.blobs, blobName(hash));
  }

  /** Remove a blob file not published. */
  unstage(pending: string): void {
    try {
      unlinkAt(this.#open.tmp, pending);
    } catch {
      // gone already
    }
  }

  /** Flush one blob file not yet published. */
  async flushBlobFile(pending: string): Promise<void> {
    const fd = openAt(this.#open.tmp, pending, O.RDONLY | O.NOFOLLOW);
    try {
      await fsync(fd, true);
    } finally {
      closeFd(fd);
    }
  }

  /** Flush one fan-out directory (best effort: some file systems refuse fsync on directories). */
  async flushBlobDir(dir: string): Promise<void> {
    const fd = openAt(this.#open.blobs, dir, O.RDONLY | O.DIRECTORY);
    try {
      await fsync(fd);
    } catch {
      // as said
    } finally {
      closeFd(fd);
    }
  }

  /** Flush the store's file system (`syncfs`); where libc has none, every fan-out directory and pending file. */
  async flush(): Promise<void> {
    try {
      await syncFs(this.#open.blobs);
      return;
    } catch (error) {
      if (!(error instanceof FsError) || error.code !== "ENOSYS") throw error;
    }
    const { blobs, tmp } = this.#open;
    const dir = openAt(tmp, ".", O.RDONLY | O.DIRECTORY);
    try {
      for (const entry of readDirFd(dir)) {
        const fd = openAt(dir, entry.raw, O.RDONLY | O.NOFOLLOW);
        try {
          await fsync(fd);
        } finally {
          closeFd(fd);
        }
      }
      await fsync(dir).catch(() => {});
    } finally {
      closeFd(dir);
    }
    for (let i = 0; i < 256; i++) {
      const fan = openAt(blobs, i.toString(16).padStart(2, "0"), O.RDONLY | O.DIRECTORY);
      await fsync(fan).catch(() => {}).finally(() => closeFd(fan));
    }
  }

  /** Whether the store has the blob. */
  hasBlob(hash: string): boolean {
    try {
      fstatAt(this.#open.blobs, blobName(hash));
      return true;
    } catch (error) {
      if (isMissing(error)) return false;
      throw error;
    }
  }

  /**
   * Open a blob for reading.
   *
   * @throws {DaemonRequestError} `EINTEGRITY` when the store lacks it.
   */
  openBlob(hash: string): { fd: number; size: number } {
    let fd: number;
    try {
      fd = openAt(this.#open.blobs, blobName(hash), O.RDONLY | O.NOFOLLOW);
    } catch (error) {
      if (isMissing(error)) {
        throw new DaemonRequestError("EINTEGRITY", `The snapshot store lacks blob ${hash}`);
      }
      throw error;
    }
    return { fd, size: fstat(fd).size };
  }

  /** Remove a blob; returns its size (0 when it was not there). */
  removeBlob(hash: string): number {
    const { blobs } = this.#open;
    try {
      const size = fstatAt(blobs, blobName(hash)).size;
      unlinkAt(blobs, blobName(hash));
      return size;
    } catch (error) {
      if (isMissing(error)) return 0;
      throw error;
    }
  }

  /** Snapshot ids in the store (unordered). */
  ids(): string[] {
    const out: string[] = [];
    // A fresh descriptor each time: a directory is read from its descriptor's position.
    const fd = openAt(this.#open.manifests, ".", O.RDONLY | O.DIRECTORY);
    try {
      for (const entry of readDirFd(fd)) {
        const match = MANIFEST_NAME.exec(entry.name);
        if (match) out.push(match[1]!);
      }
    } finally {
      closeFd(fd);
    }
    return out;
  }

  /** Whether a snapshot exists. */
  exists(id: string): boolean {
    try {
      fstatAt(this.#open.manifests, `${id}.jsonl`);
      return true;
    } catch (error) {
      if (isMissing(error)) return false;
      throw error;
    }
  }

  #openManifest(id: string): number {
    try {
      return openAt(this.#open.manifests, `${id}.jsonl`, O.RDONLY | O.NOFOLLOW);
    } catch (error) {
      if (isMissing(error)) {
        throw new DaemonRequestError("ENOENT", `No snapshot '${id}' in this daemon's store`);
      }
      throw error;
    }
  }

  /** The manifest file's bytes. */
  manifestBytes(id: string): Uint8Array {
    const fd = this.#openManifest(id);
    try {
      const size = fstat(fd).size;
      const out = new Uint8Array(size);
      for (let at = 0; at < size;) {
        const n = pread(fd, out.subarray(at), at);
        if (n === 0) break;
        at += n;
      }
      return out;
    } finally {
      closeFd(fd);
    }
  }

  /** A whole manifest, validated. */
  readManifest(id: string): Manifest {
    return parse(this.manifestBytes(id));
  }

  /** A manifest's header line only (what lists need). */
  readHeader(id: string): SnapshotHeader {
    const fd = this.#openManifest(id);
    try {
      const buffer = new Uint8Array(64 * 1024);
      const n = pread(fd, buffer, 0);
      const end = buffer.subarray(0, n).indexOf(10);
      const line = new TextDecoder().decode(buffer.subarray(0, end < 0 ? n : end));
      return checkHeader(JSON.parse(line));
    } finally {
      closeFd(fd);
    }
  }

  /** Write a manifest atomically (flushed, then named, then its directory flushed); refuses an existing id. */
  async writeManifest(manifest: Manifest): Promise<void> {
    const { manifests, tmp } = this.#open;
    const name = `${manifest.header.id}.jsonl`;
    const temp = this.tempFile(this.#tmpfile ? manifests : tmp);
    try {
      writeAll(temp.fd, serialize(manifest));
      fchmod(temp.fd, 0o400);
      await fsync(temp.fd);
      if (temp.name === null) {
        linkFd(temp.fd, manifests, name);
      } else {
        if (this.exists(manifest.header.id)) throw new FsError("renameat", 17, name);
        renameAt(tmp, temp.name, manifests, name);
      }
    } catch (error) {
      if (error instanceof FsError && error.code === "EEXIST") {
        throw new DaemonRequestError("EEXIST", `Snapshot '${manifest.header.id}' exists already`);
      }
      throw error;
    } finally {
      temp.discard();
    }
    try {
      await fsync(manifests);
    } catch {
      // some file systems refuse fsync on directories
    }
  }

  /** Remove a manifest (flushed). */
  async removeManifest(id: string): Promise<void> {
    const { manifests } = this.#open;
    try {
      unlinkAt(manifests, `${id}.jsonl`);
    } catch (error) {
      if (isMissing(error)) {
        throw new DaemonRequestError("ENOENT", `No snapshot '${id}' in this daemon's store`);
      }
      throw error;
    }
    try {
      await fsync(manifests);
    } catch {
      // as above
    }
  }
}
