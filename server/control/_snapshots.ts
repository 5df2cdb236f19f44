// The control API's snapshot routes, so a remote `Client` (and `RemoteWorker.snapshots` on it) has the same
// operations as the embedded controller. `{proc}` is the snapshot id.
import type { HttpRequest } from "../_http1_request.ts";
import type { ControlContext, RouteParams } from "./_context.ts";
import { type BodySchema, onlyParams, readJson } from "./_body.ts";
import { json } from "./_daemons.ts";
import type { SnapshotInfo } from "../snapshots.ts";

const CREATE: BodySchema = {
  required: { dir: { type: "string", nonEmpty: true } },
  optional: { message: { type: "string" }, tags: { type: "list" } },
};
const RESTORE: BodySchema = {
  required: { dest: { type: "string", nonEmpty: true } },
  optional: { overwrite: { type: "boolean" } },
};
const COPY: BodySchema = { required: { to: { type: "string", nonEmpty: true } } };

function infoJson<T extends SnapshotInfo>(info: T): Omit<T, "createdAt"> & { createdAt: string } {
  return { ...info, createdAt: info.createdAt.toISOString() };
}

/** `POST /daemons/{id}/snapshots` `{ dir, message?, tags? }` → 201 the new snapshot. */
export async function snapshotCreate(
  ctx: ControlContext,
  request: HttpRequest,
  params: RouteParams,
): Promise<Response> {
  onlyParams(ctx.url, []);
  const body = await readJson(request, CREATE, ctx.state.maxJsonBytes);
  const created = await ctx.server.snapshots(params.id!).create(body.dir as string, {
    ...(body.message !== undefined ? { message: body.message as string } : {}),
    ...(body.tags !== undefined ? { tags: body.tags as string[] } : {}),
  });
  return json(infoJson(created), 201);
}

/** `GET /daemons/{id}/snapshots?tag=` (repeatable) → `{ snapshots }`, newest first. */
export async function snapshotList(ctx: ControlContext, params: RouteParams): Promise<Response> {
  onlyParams(ctx.url, ["tag"]);
  const tags = ctx.url.searchParams.getAll("tag");
  const list = await ctx.server.snapshots(params.id!).list(tags.length ? { tags } : {});
  return json({ snapshots: list.map(infoJson) });
}

/** `GET /daemons/{id}/snapshots/{proc}`. */
export async function snapshotGet(ctx: ControlContext, params: RouteParams): Promise<Response> {
  onlyParams(ctx.url, []);
  return json(infoJson(await ctx.server.snapshots(params.id!).get(params.proc!)));
}

/** `POST /daemons/{id}/snapshots/{proc}/restore` `{ dest, overwrite? }`. */
export async function snapshotRestore(
  ctx: ControlContext,
  request: HttpRequest,
  params: RouteParams,
): Promise<Response> {
  onlyParams(ctx.url, []);
  const body = await readJson(request, RESTORE, ctx.state.maxJsonBytes);
  return json(
    await ctx.server.snapshots(params.id!).restore(params.proc!, body.dest as string, {
      ...(body.overwrite !== undefined ? { overwrite: body.overwrite as boolean } : {}),
    }),
  );
}

/** `POST /daemons/{id}/snapshots/{proc}/delete`. */
export async function snapshotDelete(
  ctx: ControlContext,
  request: HttpRequest,
  params: RouteParams,
): Promise<Response> {
  onlyParams(ctx.url, []);
  await request.body?.cancel();
  return json(await ctx.server.snapshots(params.id!).delete(params.proc!));
}

/** `POST /daemons/{id}/snapshots/{proc}/copy` `{ to }`: only the blobs the other worker lacks travel. */
export async function snapshotCopy(
  ctx: ControlContext,
  request: HttpRequest,
  params: RouteParams,
): Promise<Response> {
  onlyParams(ctx.url, []);
  const body = await readJson(request, COPY, ctx.state.maxJsonBytes);
  return json(await ctx.server.snapshots(params.id!).copyTo(body.to as string, params.proc!));
}

/** `GET /daemons/{id}/snapshots/{proc}/export` → the snapshot as a tar stream. */
export async function snapshotExport(ctx: ControlContext, params: RouteParams): Promise<Response> {
  onlyParams(ctx.url, []);
  const stream = await ctx.server.snapshots(params.id!).export(params.proc!);
  return new Response(stream, { headers: { "content-type": "application/x-tar" } });
}

/** `PUT /daemons/{id}/snapshots?message=&tag=` with a tar body → 201 the new snapshot. */
export async function snapshotImport(
  ctx: ControlContext,
  request: HttpRequest,
  params: RouteParams,
): Promise<Response> {
  onlyParams(ctx.url, ["message", "tag"]);
  const message = ctx.url.searchParams.get("message");
  const tags = ctx.url.searchParams.getAll("tag");
  const created = await ctx.server.snapshots(params.id!).import(
    request.body ?? new ReadableStream({ start: (c) => c.close() }),
    {
      ...(message !== null ? { message } : {}),
      ...(tags.length ? { tags } : {}),
    },
  );
  return json(infoJson(created), 201);
}
