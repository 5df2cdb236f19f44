// Everything the benchmark takes from the checkout under test (`--root DIR`, default: this one). The suite itself
// uses no bare specifiers, so it runs under any checkout's deno.json. Paths into daemon internals live here
// only: when the daemon's files move, this is the one file to fix.
import type * as ModTypes from "../../mod.ts";

/** The public module of a checkout. */
export type Mod = typeof ModTypes;
/** The controller class of a checkout. */
export type Server = Awaited<ReturnType<Mod["Server"]["listen"]>>;

/** The local PTY the daemon uses (daemon internals), as the PTY baseline needs it. */
export interface LocalPty extends AsyncDisposable {
  read(): Promise<Uint8Array | null>;
  write(data: Uint8Array): Promise<void>;
}

/** Spawns a local PTY: `{ command, args, env }` as the daemon's Pty.spawn takes them. */
export type SpawnLocalPty = (
  options: { command: string; args: string[]; env: Record<string, string> },
) => LocalPty;

/** The daemon's own spawn primitive (daemon internals), for the in-daemon spawn figure. */
export interface DaemonSpawn {
  /** Spawns `argv` with piped stdout/stderr and no stdin; resolves with the milliseconds until both ended and
   * the child exited. */
  run(argv: string[], env: Record<string, string>): Promise<number>;
  /** Keeps the primitive's runtime (threads, poller) up between spawns. */
  hold(): Disposable;
}

/** A checkout: its root, its public module and the internals the baselines need. */
export interface Checkout {
  root: string;
  mod: Mod;
  /** The daemon's entry point. */
  daemonMain: string;
  /** The `deno run` permission flags the daemon ships with. */
  daemonFlags: readonly string[];
  /** The WebSocket subprotocol daemons offer. */
  subprotocol: string;
  /** `deno run` flags that resolve the checkout's bare imports (its deno.json) in a helper process. */
  runFlags: string[];
  loadPty(): Promise<SpawnLocalPty>;
  loadDaemonSpawn(): Promise<DaemonSpawn>;
}

/** Where the internals were found in a checkout, relative to its root (first match wins). */
const PATHS = {
  permissions: ["daemon/permissions.ts"],
  pty: ["daemon/pty/pty.ts"],
  posixChild: ["daemon/_posix_child.ts", "daemon/spawn/_posix_child.ts"],
};

/** The root of the checkout this suite lives in. */
export const OWN_ROOT: string = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

async function importFirst(root: string, paths: string[]): Promise<Record<string, unknown>> {
  const errors: string[] = [];
  for (const path of paths) {
    const file = `${root}/${path}`;
    try {
      Deno.statSync(file);
    } catch {
      errors.push(`${path}: not found`);
      continue;
    }
    return await import(`file://${file}`);
  }
  throw new Error(
    `Cannot find a daemon internal in ${root} (${errors.join("; ")}): fix tests/bench/_checkout.ts`,
  );
}

function member<T>(module: Record<string, unknown>, name: string, root: string): T {
  if (!(name in module)) {
    throw new Error(`${name} is not exported where tests/bench/_checkout.ts looks in ${root}`);
  }
  return module[name] as T;
}

/** `--config ROOT/deno.json` (or .jsonc) when the checkout has one. */
export function configFlags(root: string): string[] {
  for (const name of ["deno.json", "deno.jsonc"]) {
    try {
      Deno.statSync(`${root}/${name}`);
      return ["--config", `${root}/${name}`];
    } catch {
      // try the next
    }
  }
  return [];
}

/** Loads the checkout at `root` (its mod.ts now, the internals on demand). */
export async function loadCheckout(root: string): Promise<Checkout> {
  root = root.replace(/\/$/, "");
  const mod = await import(`file://${root}/mod.ts`) as Mod;
  let daemonFlags: readonly string[];
  try {
    const permissions = await importFirst(root, PATHS.permissions);
    daemonFlags = member<readonly string[]>(permissions, "DAEMON_PERMISSION_FLAGS", root);
  } catch (error) {
    console.error(`bench: ${(error as Error).message}; running the daemon with --allow-all`);
    daemonFlags = ["--allow-all"];
  }
  return {
    root,
    mod,
    daemonMain: `${root}/daemon/main.ts`,
    daemonFlags,
    subprotocol: mod.SUBPROTOCOL,
    runFlags: configFlags(root),
    async loadPty() {
      const module = await importFirst(root, PATHS.pty);
      const Pty = member<{ spawn: SpawnLocalPty }>(module, "Pty", root);
      return (options) => Pty.spawn(options);
    },
    async loadDaemonSpawn() {
      const module = await importFirst(root, PATHS.posixChild);
      type Child = {
        outputs: (() => Promise<Uint8Array | null>)[];
        status: Promise<unknown>;
        dispose?: () => Promise<void> | void;
      };
      const spawn = member<(o: object) => Child>(module, "spawnPosixChild", root);
      const hold = member<() => Disposable>(module, "holdPosixChildRuntime", root);
      const drain = async (read: () => Promise<Uint8Array | null>) => {
        while ((await read()) !== null) { /* discard */ }
      };
      return {
        hold,
        async run(argv, env) {
          const start = performance.now();
          const child = spawn({ argv, env, stdin: false });
          await Promise.all([drain(child.outputs[0]!), drain(child.outputs[1]!), child.status]);
          const elapsed = performance.now() - start;
          await child.dispose?.();
          return elapsed;
        },
      };
    },
  };
}
