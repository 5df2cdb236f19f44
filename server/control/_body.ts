// Strict input of the control API: JSON bodies read under a size limit and checked field by field (unknown fields,
// wrong types and bad values are 400 naming the field), and query parameters.
import { EngineRequest, type HttpRequest } from "../_http1_request.ts";
import { badRequest, HttpError } from "./_errors.ts";

/** How one field is checked. */
export type FieldRule =
  | { type: "string"; nonEmpty?: boolean }
  | { type: "boolean" }
  | { type: "int"; min: number; max?: number }
  | { type: "command" }
  | { type: "strings" }
  | { type: "list" }
  | { type: "enum"; values: readonly string[] };

/** A body schema: required and optional fields. */
export interface BodySchema {
  required?: Record<string, FieldRule>;
  optional?: Record<string, FieldRule>;
}

/** Read a request body as bytes, at most `max` (413 beyond). */
export async function readLimited(request: HttpRequest, max: number): Promise<Uint8Array> {
  if (request instanceof EngineRequest) return await request.bytesUpTo(max, () => tooLarge(max));
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > max) {
    await request.body?.cancel().catch(() => {});
    throw tooLarge(max);
  }
  if (!request.body) return new Uint8Array(0);
  // A declared length frames the body (the HTTP server refuses a body that overruns it), so it is read whole: one
  // call instead of a read per chunk, which for a small JSON body saves about 0.3 ms.
  if (declared !== null) return new Uint8Array(await request.arrayBuffer());
  const chunks: Uint8Array[] = [];
  let length = 0;
  const reader = request.body.getReader();
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      length += value.byteLength;
      if (length > max) {
        await reader.cancel().catch(() => {});
        throw tooLarge(max);
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

function tooLarge(max: number): HttpError {
  return new HttpError(413, "TOO_LARGE", `Request body is larger than ${max} bytes`);
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/** Read and check a JSON object body (whatever its Content-Type says: `curl -d` sends a form type). */
export async function readJson(
  request: HttpRequest,
  schema: BodySchema,
  max: number,
): Promise<Record<string, unknown>> {
  const bytes = await readLimited(request, max);
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch (error) {
    throw badRequest(`Body is not valid JSON: ${(error as Error).message.slice(0, 200)}`);
  }
  return checkObject(value, schema, "body");
}

const NO_FIELDS: Record<string, FieldRule> = {};

/** Check a parsed value against a schema. */
export function checkObject(
  value: unknown,
  schema: BodySchema,
  where: string,
): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw badRequest(`${where} must be a JSON object, got ${kind(value)}`);
  }
  const object = value as Record<string, unknown>;
  const required = schema.required ?? NO_FIELDS;
  const optional = schema.optional ?? NO_FIELDS;
  // `for...in` over the schemas (plain object literals): no key or entry arrays per request.
  for (const key in object) {
    if (!Object.hasOwn(required, key) && !Object.hasOwn(optional, key)) {
      throw badRequest(`${where} has an unknown field '${key.slice(0, 100)}'`);
    }
  }
  for (const key in required) {
    if (object[key] === undefined) throw badRequest(`Field '${key}' is required`);
    checkField(key, object[key], required[key]!);
  }
  for (const key in optional) {
    if (object[key] !== undefined) checkField(key, object[key], optional[key]!);
  }
  return object;
}

function kind(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

function checkField(name: string, value: unknown, rule: FieldRule): void {
  switch (rule.type) {
    case "string":
      if (typeof value !== "string") {
        throw badRequest(`Field '${name}' must be a string, got ${kind(value)}`);
      }
      if (rule.nonEmpty && value === "") throw badRequest(`Field '${name}' must not be empty`);
      if (value.includes("\0")) throw badRequest(`Field '${name}' must not contain NUL`);
      return;
    case "boolean":
      if (typeof value !== "boolean") {
        throw badRequest(`Field '${name}' must be a boolean, got ${kind(value)}`);
      }
      return;
    case "int":
      if (typeof value !== "number" || !Number.isSafeInteger(value)) {
        throw badRequest(`Field '${name}' must be an integer, got ${JSON.stringify(value)}`);
      }
      if (value < rule.min || (rule.max !== undefined && value > rule.max)) {
        throw badRequest(
          `Field '${name}' must be from ${rule.min}${
            rule.max !== undefined ? ` to ${rule.max}` : " up"
          }, got ${value}`,
        );
      }
      return;
    case "list":
      if (!Array.isArray(value) || !value.every((a) => typeof a === "string")) {
        throw badRequest(`Field '${name}' must be an array of strings, got ${kind(value)}`);
      }
      return;
    case "command":
      if (typeof value === "string") {
        if (value === "") throw badRequest(`Field '${name}' must not be empty`);
        return;
      }
      if (
        !Array.isArray(value) || value.length === 0 || !value.every((a) => typeof a === "string")
      ) {
        throw badRequest(
          `Field '${name}' must be a non-empty string or array of strings, got ${kind(value)}`,
        );
      }
      if (value[0] === "") throw badRequest(`Field '${name}[0]' (the program) must not be empty`);
      return;
    case "strings": {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        throw badRequest(`Field '${name}' must be an object of strings, got ${kind(value)}`);
      }
      for (const [key, item] of Object.entries(value)) {
        if (typeof item !== "string") {
          throw badRequest(
            `Field '${name}.${key.slice(0, 100)}' must be a string, got ${kind(item)}`,
          );
        }
      }
      return;
    }
    case "enum":
      if (typeof value !== "string" || !rule.values.includes(value)) {
        throw badRequest(
          `Field '${name}' must be one of ${rule.values.join(", ")}, got ${JSON.stringify(value)}`,
        );
      }
      return;
  }
}

/** A query parameter: absent → undefined; given more than once → 400. */
export function queryParam(url: URL, name: string): string | undefined {
  const all = url.searchParams.getAll(name);
  if (all.length > 1) throw badRequest(`Query parameter '${name}' is given more than once`);
  return all[0];
}

/** A required query parameter. */
export function requiredParam(url: URL, name: string): string {
  const value = queryParam(url, name);
  if (value === undefined || value === "") {
    throw badRequest(`Query parameter '${name}' is required`);
  }
  if (value.includes("\0")) throw badRequest(`Query parameter '${name}' must not contain NUL`);
  return value;
}

/** A boolean query parameter (`true`/`false`, also `1`/`0`). */
export function boolParam(url: URL, name: string, fallback: boolean): boolean {
  const value = queryParam(url, name);
  if (value === undefined) return fallback;
  if (value === "true" || value === "1") return true;
  if (value === "false" || value === "0") return false;
  throw badRequest(`Query parameter '${name}' must be true or false, got '${value.slice(0, 100)}'`);
}

/** A non-negative integer query parameter. */
export function intParam(
  url: URL,
  name: string,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  const value = queryParam(url, name);
  if (value === undefined) return undefined;
  if (!/^\d{1,16}$/.test(value) || Number(value) < min || Number(value) > max) {
    throw badRequest(
      `Query parameter '${name}' must be an integer from ${min} to ${max}, got '${
        value.slice(0, 100)
      }'`,
    );
  }
  return Number(value);
}

/** Reject query parameters a route does not know. */
export function onlyParams(url: URL, names: readonly string[]): void {
  for (const key of url.searchParams.keys()) {
    if (!names.includes(key)) {
      throw badRequest(`Unknown query parameter '${key.slice(0, 100)}'`);
    }
  }
}
