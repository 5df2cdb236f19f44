// A worker's workspace snapshots over the control API (`Client.snapshots(id)`): the same operations and shapes
// as the embedded `Snapshots`, on the routes of control/_snapshots.ts.
import type { Transport } from "./_client_http.ts";
import type {
  SnapshotCopyResult,
  SnapshotCreated,
  SnapshotCreateOptions,
  SnapshotDeleteResult,
  SnapshotInfo,
  SnapshotListOptions,
  SnapshotRestoreOptions,
  SnapshotRestoreResult,
} from "./snapshots.ts";
import type { SnapshotsHandle } from "./controller.ts";

function enc(s: string): string {
  return encodeURIComponent(s);
}

function checkId(name: string, value: unknown): string {
  if (typeof value !== "string" || value === "") {
    throw new TypeError(`${name} must be a non-empty string, got ${JSON.stringify(value)}`);
  }
  return value;
}

function info<T extends SnapshotInfo>(value: unknown): T {
  const v = value as Record<string, unknown>;
  if (typeof v !== "object" || v === null || typeof v.id !== "string") {
    throw new TypeError("The control API answered a snapshot without an id");
  }
  return { ...v, createdAt: new Date(String(v.createdAt)) } as unknown as T;
}

/** A worker's snapshots through a remote controller. */
export class ClientSnapshots implements SnapshotsHandle {
  /** The daemon whose store this is. */
  readonly daemonId: string;
  readonly #transport: Transport;
  readonly #base: string;

  constructor(transport: Transport, daemonId: string) {
    this.#transport = transport;
    this.daemonId = daemonId;
    this.#base = `/daemons/${enc(daemonId)}/snapshots`;
  }

  #json(method: string, path: string, json?: unknown): Promise<unknown> {
    return this.#transport.json(method, path, {
      ...(json !== undefined ? { json } : {}),
      // A snapshot of a big tree takes as long as it takes; the daemon's request deadline bounds it.
      timeout: null,
      context: { daemonId: this.daemonId },
    });
  }

  async create(dir: string, options: SnapshotCreateOptions = {}): Promise<SnapshotCreated> {
    checkId("dir", dir);
    return info<SnapshotCreated>(
      await this.#json("POST", this.#base, {
        dir,
        ...(options.message !== undefined ? { message: options.message } : {}),
        ...(options.tags !== undefined ? { tags: options.tags } : {}),
      }),
    );
  }

  async restore(
    id: string,
    dest: string,
    options: SnapshotRestoreOptions = {},
  ): Promise<SnapshotRestoreResult> {
    checkId("id", id);
    checkId("dest", dest);
    return await this.#json("POST", `${this.#base}/${enc(id)}/restore`, {
      dest,
      ...(options.overwrite !== undefined ? { overwrite: options.overwrite } : {}),
    }) as SnapshotRestoreResult;
  }

  async list(options: SnapshotListOptions = {}): Promise<SnapshotInfo[]> {
    const body = await this.#transport.json("GET", this.#base, {
      query: { tag: options.tags },
      context: { daemonId: this.daemonId },
    }) as { snapshots: unknown[] };
    return body.snapshots.map((s) => info<SnapshotInfo>(s));
  }

  async findByTag(tag: string): Promise<SnapshotInfo | undefined> {
    checkId("tag", tag);
    return (await this.list({ tags: [tag] }))[0];
  }

  async get(id: string): Promise<SnapshotInfo> {
    checkId("id", id);
    return info<SnapshotInfo>(await this.#json("GET", `${this.#base}/${enc(id)}`));
  }

  async delete(id: string): Promise<SnapshotDeleteResult> {
    checkId("id", id);
    return await this.#json("POST", `${this.#base}/${enc(id)}/delete`) as SnapshotDeleteResult;
  }

  async copyTo(otherDaemonId: string, id: string): Promise<SnapshotCopyResult> {
    checkId("otherDaemonId", otherDaemonId);
    checkId("id", id);
    return await this.#json("POST", `${this.#base}/${enc(id)}/copy`, {
      to: otherDaemonId,
    }) as SnapshotCopyResult;
  }

  async export(id: string): Promise<ReadableStream<Uint8Array>> {
    checkId("id", id);
    const response = await this.#transport.call("GET", `${this.#base}/${enc(id)}/export`, {
      timeout: null,
      context: { daemonId: this.daemonId },
    });
    return response.body!;
  }

  async import(
    stream: ReadableStream<Uint8Array>,
    options: SnapshotCreateOptions = {},
  ): Promise<SnapshotInfo> {
    if (!(stream instanceof ReadableStream)) {
      throw new TypeError(`stream must be a ReadableStream, got ${typeof stream}`);
    }
    const response = await this.#transport.call("PUT", this.#base, {
      query: {
        ...(options.message !== undefined ? { message: options.message } : {}),
        tag: options.tags,
      },
      body: stream,
      headers: { "content-type": "application/x-tar" },
      timeout: null,
      context: { daemonId: this.daemonId },
    });
    return info<SnapshotInfo>(await response.json());
  }
}
