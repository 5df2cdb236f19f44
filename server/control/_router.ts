// The control API's routes: method + path template -> scope and handler. One table, also what the OpenAPI test
// compares against openapi.json.
import type { HttpRequest } from "../_http1_request.ts";
import { isDaemonId } from "@sandd/protocol/constants";
import type { ControlContext, RouteParams } from "./_context.ts";
import { badRequest } from "./_errors.ts";
import type { Scope } from "./options.ts";
import { getDaemon, listDaemons, waitDaemon } from "./_daemons.ts";
import { broadcast, exec } from "./_exec.ts";
import {
  getProcess,
  listProcesses,
  processOutput,
  processSignal,
  processStatus,
  processStdin,
  spawnProcess,
} from "./_processes.ts";
import {
  downloadDir,
  downloadFile,
  list,
  mkdir,
  move,
  remove,
  stat,
  uploadDir,
  uploadFile,
  watch,
} from "./_files.ts";
import { handleTerminal } from "./terminal.ts";
import { exposeClose, exposeCreate, handleTunnel } from "./_tunnels.ts";
import {
  snapshotCopy,
  snapshotCreate,
  snapshotDelete,
  snapshotExport,
  snapshotGet,
  snapshotImport,
  snapshotList,
  snapshotRestore,
} from "./_snapshots.ts";

/** A route's handler. */
export type Handler = (
  ctx: ControlContext,
  request: HttpRequest,
  params: RouteParams,
) => Response | Promise<Response>;

/** One route. */
export interface Route {
  method: "GET" | "POST" | "PUT";
  /** Path below `/api/v1`, with `{id}` and `{proc}` segments. */
  path: string;
  /** The scope it needs; null: none (no authentication). */
  scope: Scope | null;
  /** The handler (`/openapi.json` and `/events` are answered by the mount before it). */
  handle: Handler;
}

/** Every route of the control API. `GET /openapi.json` and `GET /events` are answered by the mount itself. */
export const ROUTES: readonly Route[] = [
  { method: "GET", path: "/openapi.json", scope: null, handle: () => new Response() },
  { method: "GET", path: "/events", scope: "read", handle: () => new Response() },
  { method: "GET", path: "/daemons", scope: "read", handle: (c) => listDaemons(c) },
  { method: "GET", path: "/daemons/{id}", scope: "read", handle: (c, _r, p) => getDaemon(c, p) },
  {
    method: "GET",
    path: "/daemons/{id}/wait",
    scope: "read",
    handle: (c, _r, p) => waitDaemon(c, p),
  },
  { method: "POST", path: "/daemons/{id}/exec", scope: "exec", handle: exec },
  { method: "POST", path: "/broadcast", scope: "exec", handle: (c, r) => broadcast(c, r) },
  { method: "POST", path: "/daemons/{id}/processes", scope: "exec", handle: spawnProcess },
  {
    method: "GET",
    path: "/daemons/{id}/processes",
    scope: "read",
    handle: (c, _r, p) => listProcesses(c, p),
  },
  {
    method: "GET",
    path: "/daemons/{id}/processes/{proc}",
    scope: "read",
    handle: (c, _r, p) => getProcess(c, p),
  },
  {
    method: "GET",
    path: "/daemons/{id}/processes/{proc}/output",
    scope: "read",
    handle: processOutput,
  },
  {
    method: "POST",
    path: "/daemons/{id}/processes/{proc}/stdin",
    scope: "exec",
    handle: processStdin,
  },
  {
    method: "POST",
    path: "/daemons/{id}/processes/{proc}/signal",
    scope: "exec",
    handle: processSignal,
  },
  {
    method: "GET",
    path: "/daemons/{id}/processes/{proc}/status",
    scope: "read",
    handle: processStatus,
  },
  {
    method: "GET",
    path: "/daemons/{id}/terminal",
    scope: "exec",
    handle: (c, r, p) => handleTerminal(c, r, p.id!),
  },
  { method: "GET", path: "/daemons/{id}/files", scope: "files", handle: downloadFile },
  { method: "PUT", path: "/daemons/{id}/files", scope: "files", handle: uploadFile },
  { method: "GET", path: "/daemons/{id}/fs/stat", scope: "read", handle: (c, _r, p) => stat(c, p) },
  { method: "GET", path: "/daemons/{id}/fs/list", scope: "read", handle: (c, _r, p) => list(c, p) },
  {
    method: "GET",
    path: "/daemons/{id}/fs/watch",
    scope: "read",
    handle: (c, _r, p) => watch(c, p),
  },
  { method: "POST", path: "/daemons/{id}/fs/mkdir", scope: "files", handle: mkdir },
  { method: "POST", path: "/daemons/{id}/fs/remove", scope: "files", handle: remove },
  { method: "POST", path: "/daemons/{id}/fs/move", scope: "files", handle: move },
  { method: "GET", path: "/daemons/{id}/dirs", scope: "files", handle: downloadDir },
  { method: "PUT", path: "/daemons/{id}/dirs", scope: "files", handle: uploadDir },
  { method: "GET", path: "/daemons/{id}/tunnel", scope: "exec", handle: handleTunnel },
  { method: "POST", path: "/daemons/{id}/snapshots", scope: "files", handle: snapshotCreate },
  { method: "PUT", path: "/daemons/{id}/snapshots", scope: "files", handle: snapshotImport },
  {
    method: "GET",
    path: "/daemons/{id}/snapshots",
    scope: "read",
    handle: (c, _r, p) => snapshotList(c, p),
  },
  {
    method: "GET",
    path: "/daemons/{id}/snapshots/{proc}",
    scope: "read",
    handle: (c, _r, p) => snapshotGet(c, p),
  },
  {
    method: "POST",
    path: "/daemons/{id}/snapshots/{proc}/restore",
    scope: "files",
    handle: snapshotRestore,
  },
  {
    method: "POST",
    path: "/daemons/{id}/snapshots/{proc}/delete",
    scope: "files",
    handle: snapshotDelete,
  },
  {
    method: "POST",
    path: "/daemons/{id}/snapshots/{proc}/copy",
    scope: "files",
    handle: snapshotCopy,
  },
  {
    method: "GET",
    path: "/daemons/{id}/snapshots/{proc}/export",
    scope: "files",
    handle: (c, _r, p) => snapshotExport(c, p),
  },
  { method: "POST", path: "/daemons/{id}/expose", scope: "exec", handle: exposeCreate },
  {
    method: "POST",
    path: "/daemons/{id}/expose/{proc}/close",
    scope: "exec",
    handle: exposeClose,
  },
];

const PROC_PATTERN = /^[A-Za-z0-9._:@-]{1,128}$/;

/** A bad path parameter as an error message shows it. */
function shown(value: string): string {
  return JSON.stringify(value.slice(0, 140));
}

interface Node {
  /** Literal children. */
  children: Map<string, Node>;
  /** The `{id}` or `{proc}` child. */
  param: { name: "id" | "proc"; node: Node } | null;
  /** Routes ending here, by method. */
  methods: Map<string, Route>;
}

function node(): Node {
  return { children: new Map(), param: null, methods: new Map() };
}

/** What a path matched: the routes by method and the parameters; null when no route has this path. */
export interface Match {
  methods: Map<string, Route>;
  params: RouteParams;
}

export class Router {
  readonly #root: Node = node();

  constructor(routes: readonly Route[]) {
    for (const route of routes) {
      let at = this.#root;
      for (const segment of route.path.split("/").slice(1)) {
        if (segment === "{id}" || segment === "{proc}") {
          const name = segment === "{id}" ? "id" : "proc";
          at.param ??= { name, node: node() };
          at = at.param.node;
        } else {
          let next = at.children.get(segment);
          if (!next) at.children.set(segment, next = node());
          at = next;
        }
      }
      at.methods.set(route.method, route);
    }
  }

  /** Match `path` (below the prefix, starting with `/`). Throws 400 for a malformed parameter. */
  match(path: string): Match | null {
    const segments = path.split("/");
    let at = this.#root;
    const params: RouteParams = {};
    for (let i = 1; i < segments.length; i++) {
      const raw = segments[i]!;
      const literal = at.children.get(raw);
      if (literal) {
        at = literal;
        continue;
      }
      if (!at.param) return null;
      let value = raw;
      // Decoded only when there is something to decode (it is the same string otherwise).
      if (raw.includes("%")) {
        try {
          value = decodeURIComponent(raw);
        } catch {
          throw badRequest(`Path parameter '${at.param.name}' is not valid URL encoding`);
        }
      }
      if (at.param.name === "id" && !isDaemonId(value)) {
        throw badRequest(
          `Path parameter 'id' must be a daemon id (1-128 of A-Z a-z 0-9 . _ : @ -), got ${
            shown(value)
          }`,
        );
      }
      if (at.param.name === "proc" && !PROC_PATTERN.test(value)) {
        throw badRequest(
          `Path parameter 'proc' must be a process id (1-128 of A-Z a-z 0-9 . _ : @ -), got ${
            shown(value)
          }`,
        );
      }
      params[at.param.name] = value;
      at = at.param.node;
    }
    return at.methods.size > 0 ? { methods: at.methods, params } : null;
  }
}
