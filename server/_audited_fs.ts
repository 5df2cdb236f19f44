// `server.fs(id)`: the file system handle of server/files.ts with every operation going through the audit wrapper.
import type { Auditor } from "./_audited.ts";
import {
  type FileEntry,
  type FileHost,
  type FileStat,
  type FsEvent,
  type ListOptions,
  type MkdirOptions,
  RemoteFs,
  type RemoveOptions,
  type WatchOptions,
} from "./files.ts";

export class AuditedFs extends RemoteFs {
  readonly #auditor: Auditor;

  constructor(host: FileHost, daemonId: string, auditor: Auditor) {
    super(host, daemonId);
    this.#auditor = auditor;
  }

  override stat(path: string): Promise<FileStat> {
    return this.#auditor.run("fs.stat", this.daemonId, { path }, () => super.stat(path));
  }

  override list(path: string, options: ListOptions = {}): Promise<FileEntry[]> {
    return this.#auditor.run("fs.list", this.daemonId, { path }, () => super.list(path, options));
  }

  override mkdir(path: string, options: MkdirOptions = {}): Promise<void> {
    return this.#auditor.run("fs.mkdir", this.daemonId, { path }, () => super.mkdir(path, options));
  }

  override remove(path: string, options: RemoveOptions = {}): Promise<void> {
    return this.#auditor.run(
      "fs.remove",
      this.daemonId,
      { path },
      () => super.remove(path, options),
    );
  }

  override move(from: string, to: string): Promise<void> {
    return this.#auditor.run(
      "fs.move",
      this.daemonId,
      { path: from, to },
      () => super.move(from, to),
    );
  }

  /** One record per watch, written when it ends (with the error it ended with, if any). */
  override async *watch(
    path: string,
    options: WatchOptions = {},
  ): AsyncGenerator<FsEvent, void, undefined> {
    const ended = Promise.withResolvers<void>();
    this.#auditor.run("fs.watch", this.daemonId, { path }, () => ended.promise).catch(() => {});
    try {
      yield* super.watch(path, options);
    } catch (error) {
      ended.reject(error);
      throw error;
    } finally {
      ended.resolve();
    }
  }
}
