// The one audit wrapper: every action the controller takes on a daemon (every request it sends) goes through
// `Auditor.run`, which writes one record with the outcome, refused and failed actions included.
import { AsyncLocalStorage } from "node:async_hooks";
import type { AuditInput, AuditLog, AuditRecord } from "./audit.ts";
import type { ProcessStatus } from "./process.ts";

/** Fields an action adds to its record. */
export type AuditFields = Partial<
  Pick<
    AuditRecord,
    "command" | "path" | "to" | "process" | "pid" | "exitCode" | "bytes" | "durationMs"
  >
>;

interface Logger {
  error(message: string, props: Record<string, unknown>): void;
}

function message(error: unknown): string {
  return String((error as Error)?.message ?? error);
}

/**
 * Who is acting when it is not the script embedding the server: the control API runs each request inside
 * `auditActor.run("client:<name>", ...)`, and the records written meanwhile carry that identity instead of the
 * daemon's.
 */
export const auditActor: AsyncLocalStorage<string> = new AsyncLocalStorage<string>();

export class Auditor {
  readonly #trail: AuditLog | undefined;
  readonly #identityOf: (daemon: string) => string | undefined;
  readonly #log: Logger;

  constructor(
    trail: AuditLog | undefined,
    identityOf: (daemon: string) => string | undefined,
    log: Logger,
  ) {
    this.#trail = trail;
    this.#identityOf = identityOf;
    this.#log = log;
  }

  /** Write one record (a no-op without an audit trail); a malformed record never breaks the action. */
  write(record: AuditInput): void {
    if (!this.#trail) return;
    try {
      this.#trail.write(record);
    } catch (error) {
      this.#log.error("Bad audit record: {error}", { error: String(error) });
    }
  }

  /**
   * Run an action and record it: `fields` describe the request, `outcome` adds what its result says. A thrown
   * error (a refusal, a failure, a bad argument) is recorded with `ok: false` and rethrown.
   */
  async run<T>(
    action: AuditRecord["action"],
    daemon: string,
    fields: AuditFields,
    fn: () => Promise<T>,
    outcome?: (result: T) => AuditFields,
  ): Promise<T> {
    if (!this.#trail) return await fn();
    const started = performance.now();
    const id = String(daemon);
    const identity = auditActor.getStore() ?? this.#identityOf(id);
    const base = { daemon: id, ...(identity !== undefined ? { identity } : {}), action, ...fields };
    let result: T;
    try {
      result = await fn();
    } catch (error) {
      this.write({
        ...base,
        durationMs: performance.now() - started,
        ok: false,
        error: message(error),
      });
      throw error;
    }
    this.write({
      ...base,
      durationMs: performance.now() - started,
      ...(outcome ? outcome(result) : {}),
      ok: true,
    });
    return result;
  }

  /** Record how a started process ended, when it does. */
  exit(daemon: string, fields: AuditFields, status: Promise<ProcessStatus>): void {
    if (!this.#trail) return;
    const started = performance.now();
    const identity = auditActor.getStore() ?? this.#identityOf(daemon);
    const base = {
      daemon,
      ...(identity !== undefined ? { identity } : {}),
      action: "exit",
      ...fields,
    };
    status.then(
      (s) =>
        this.write({
          ...base,
          exitCode: s.exitCode,
          durationMs: performance.now() - started,
          ok: true,
        }),
      (error) =>
        this.write({
          ...base,
          durationMs: performance.now() - started,
          ok: false,
          error: message(error),
        }),
    );
  }
}
