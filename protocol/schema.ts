/**
 * A small schema language for the JSON messages of the protocol. A schema is plain data written `as const`, so it
 * is at once the runtime description ({@linkcode compile} turns it into a validator), the source of the
 * TypeScript type ({@linkcode Infer}), and something a test can walk to check `SPEC.md`. Each message and each
 * request and reply is defined once, as a schema; its type is inferred from it.
 *
 * @example Define, infer and validate
 * ```ts
 * import { compile, type Infer, type Schema } from "./schema.ts";
 * const POINT = {
 *   type: "object",
 *   required: { x: { type: "int", min: 0, max: 100 } },
 *   optional: { label: { type: "string", max: 16 } },
 * } as const satisfies Schema;
 * type Point = Infer<typeof POINT>; // { x: number; label?: string }
 * const point: Point = compile(POINT)(JSON.parse('{"x":3}'), "point");
 * console.assert(point.x === 3);
 * ```
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";

/** A validator: returns the value typed, or throws a {@linkcode ProtocolError} naming the field path. */
export type Check<T> = (value: unknown, path: string) => T;

/** An integer from `min` to `max` inclusive. */
export interface IntSchema {
  /** Kind. */
  readonly type: "int";
  /** Smallest value. */
  readonly min: number;
  /** Largest value. */
  readonly max: number;
}

/** A string of `min` to `max` characters (UTF-16 code units), optionally matching `pattern`. */
export interface StringSchema {
  /** Kind. */
  readonly type: "string";
  /** Fewest characters. @default 0 */
  readonly min?: number;
  /** Most characters. */
  readonly max: number;
  /** A pattern the whole string must match. */
  readonly pattern?: RegExp;
  /** The pattern in words, a phrase that follows "must be" in error messages and the spec. */
  readonly rule?: string;
}

/** `true` or `false`. */
export interface BooleanSchema {
  /** Kind. */
  readonly type: "boolean";
}

/** One of a fixed set of strings (or of booleans, for tags like `ok: true`). */
export interface LiteralSchema {
  /** Kind. */
  readonly type: "literal";
  /** The allowed values, all strings or all booleans. */
  readonly values: readonly string[] | readonly boolean[];
}

/** Any JSON value (only for data a second, more specific schema checks later). */
export interface AnySchema {
  /** Kind. */
  readonly type: "any";
}

/** `null` or a value of `of`. */
export interface NullableSchema {
  /** Kind. */
  readonly type: "nullable";
  /** The schema of a non-null value. */
  readonly of: Schema;
}

/** An array of `min` to `max` items of `of`. */
export interface ArraySchema {
  /** Kind. */
  readonly type: "array";
  /** The schema of each item. */
  readonly of: Schema;
  /** Fewest items. @default 0 */
  readonly min?: number;
  /** Most items. */
  readonly max: number;
}

/** An object used as a map: at most `max` keys (each at most `keyMax` characters), every value of `of`. */
export interface RecordSchema {
  /** Kind. */
  readonly type: "record";
  /** The schema of each value. */
  readonly of: Schema;
  /** Most keys. */
  readonly max: number;
  /** Longest key, in characters. @default unlimited */
  readonly keyMax?: number;
}

/** The fields of an {@linkcode ObjectSchema}, by name. */
export interface Fields {
  /** A field's schema. */
  readonly [name: string]: Schema;
}

/** An object with `required` and `optional` fields; any other field is refused. */
export interface ObjectSchema {
  /** Kind. */
  readonly type: "object";
  /** Fields that must be present. */
  readonly required: Fields;
  /** Fields that may be absent (absent and `undefined` are the same; JSON has no `undefined`). */
  readonly optional?: Fields;
}

/**
 * One of several schemas of different JSON kinds (string, number, boolean, null, array, object): the value's kind
 * picks the member, so validation never tries one member and falls back to the next.
 */
export interface UnionSchema {
  /** Kind. */
  readonly type: "union";
  /** The members, each of its own JSON kind. */
  readonly of: readonly Schema[];
}

/** Any schema. */
export type Schema =
  | IntSchema
  | StringSchema
  | BooleanSchema
  | LiteralSchema
  | AnySchema
  | NullableSchema
  | ArraySchema
  | RecordSchema
  | ObjectSchema
  | UnionSchema;

/** Flattens an intersection of object types into one object type (for readable hovers and docs). */
export type Simplify<T> = { [K in keyof T]: T[K] } & unknown;

/** The type of the required fields `R` and the optional fields `O` of an object schema. */
export type InferFields<R, O> = Simplify<
  { -readonly [K in keyof R]: Infer<R[K]> } & { -readonly [K in keyof O]?: Infer<O[K]> }
>;

/**
 * The TypeScript type of the values a schema accepts.
 *
 * @example Infer a type
 * ```ts
 * import type { Infer } from "./schema.ts";
 * const AGE = { type: "nullable", of: { type: "int", min: 0, max: 150 } } as const;
 * const age: Infer<typeof AGE> = null; // number | null
 * console.assert(age === null);
 * ```
 */
export type Infer<S> = S extends { readonly type: "int" } ? number
  : S extends { readonly type: "string" } ? string
  : S extends { readonly type: "boolean" } ? boolean
  : S extends { readonly type: "literal"; readonly values: readonly (infer V)[] } ? V
  : S extends { readonly type: "any" } ? unknown
  : S extends { readonly type: "nullable"; readonly of: infer O } ? Infer<O> | null
  : S extends { readonly type: "array"; readonly of: infer O } ? Infer<O>[]
  : S extends { readonly type: "record"; readonly of: infer O } ? Record<string, Infer<O>>
  : S extends { readonly type: "union"; readonly of: readonly (infer O)[] } ? Infer<O>
  : S extends { readonly type: "object"; readonly required: infer R; readonly optional: infer O }
    ? InferFields<R, O>
  : S extends { readonly type: "object"; readonly required: infer R } ? InferFields<R, unknown>
  : never;

type Kind = "string" | "number" | "boolean" | "null" | "array" | "object";

function kindOf(value: unknown): Kind | "other" {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  const type = typeof value;
  if (type === "string" || type === "number" || type === "boolean" || type === "object") {
    return type;
  }
  return "other";
}

function kindsOf(schema: Schema): Kind[] {
  switch (schema.type) {
    case "int":
      return ["number"];
    case "string":
      return ["string"];
    case "literal":
      return typeof schema.values[0] === "boolean" ? ["boolean"] : ["string"];
    case "any":
      return ["string", "number", "boolean", "null", "array", "object"];
    case "boolean":
      return ["boolean"];
    case "nullable":
      return ["null", ...kindsOf(schema.of)];
    case "array":
      return ["array"];
    case "record":
    case "object":
      return ["object"];
    case "union":
      return schema.of.flatMap(kindsOf);
  }
}

function show(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") {
    return `"${value.length > 40 ? value.slice(0, 40) + "..." : value}"`;
  }
  if (typeof value === "object") return "an object";
  return `${typeof value} ${String(value)}`;
}

function fail(path: string, expected: string, value: unknown): never {
  throw new ProtocolError(`Field '${path || "message"}' must be ${expected}, got ${show(value)}`);
}

/**
 * What a schema accepts, in words: the phrase used in error messages (`Field 'x' must be ...`) and in the spec.
 *
 * @example Describe a schema
 * ```ts
 * import { describeSchema } from "./schema.ts";
 * console.assert(describeSchema({ type: "int", min: 1, max: 9 }) === "an integer from 1 to 9");
 * ```
 *
 * @param schema The schema.
 * @returns A phrase starting with an article ("an integer from 1 to 9").
 */
export function describeSchema(schema: Schema): string {
  switch (schema.type) {
    case "int":
      return `an integer from ${schema.min} to ${schema.max}`;
    case "string":
      return schema.pattern
        ? schema.rule ?? `a string matching /${schema.pattern.source}/`
        : `a string of ${schema.min ?? 0} to ${schema.max} characters`;
    case "boolean":
      return "a boolean";
    case "literal":
      return typeof schema.values[0] === "boolean"
        ? schema.values.join(" or ")
        : `one of ${schema.values.join(", ")}`;
    case "any":
      return "any JSON value";
    case "nullable":
      return `${describeSchema(schema.of)} or null`;
    case "array":
      return `an array of ${schema.min ?? 0} to ${schema.max} items`;
    case "record":
      return `an object of at most ${schema.max} keys`;
    case "object":
      return "an object";
    case "union":
      return schema.of.map(describeSchema).join(" or ");
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

/** `expected` overrides the phrase of a scalar's error (a nullable scalar says "... or null"). */
function build(schema: Schema, expected: string = describeSchema(schema)): Check<unknown> {
  switch (schema.type) {
    case "int": {
      const { min, max } = schema;
      return (value, path) => {
        if (
          typeof value !== "number" || !Number.isInteger(value) || value < min || value > max
        ) {
          fail(path, expected, value);
        }
        return value;
      };
    }
    case "string": {
      const { max, pattern } = schema;
      const min = schema.min ?? 0;
      return (value, path) => {
        if (
          typeof value !== "string" || value.length > max || value.length < min ||
          (pattern !== undefined && !pattern.test(value))
        ) {
          fail(path, expected, value);
        }
        return value;
      };
    }
    case "boolean":
      return (value, path) => {
        if (typeof value !== "boolean") fail(path, expected, value);
        return value;
      };
    case "literal": {
      const values = new Set<unknown>(schema.values);
      return (value, path) => {
        if (!values.has(value)) fail(path, expected, value);
        return value;
      };
    }
    case "any":
      return (value) => value;
    case "nullable": {
      const of = build(schema.of, expected);
      return (value, path) => value === null ? null : of(value, path);
    }
    case "array": {
      const of = build(schema.of);
      const { max } = schema;
      const min = schema.min ?? 0;
      return (value, path) => {
        if (!Array.isArray(value) || value.length > max || value.length < min) {
          fail(path, expected, value);
        }
        return value.map((item, index) => of(item, `${path}[${index}]`));
      };
    }
    case "record": {
      const of = build(schema.of);
      const { max, keyMax } = schema;
      return (value, path) => {
        if (!isObject(value)) fail(path, expected, value);
        const keys = Object.keys(value);
        if (keys.length > max) fail(path, `an object of at most ${max} keys`, value);
        const out: Record<string, unknown> = {};
        for (const key of keys) {
          if (keyMax !== undefined && key.length > keyMax) {
            throw new ProtocolError(
              `Key '${key.slice(0, 40)}...' of '${path || "message"}' exceeds ${keyMax} characters`,
            );
          }
          const item = of(value[key], join(path, key));
          // A "__proto__" key (JSON.parse makes it an own property) must stay data, not become the prototype.
          if (key === "__proto__") {
            Object.defineProperty(out, key, {
              value: item,
              enumerable: true,
              writable: true,
              configurable: true,
            });
          } else out[key] = item;
        }
        return out;
      };
    }
    case "object": {
      const required = Object.entries(schema.required).map(([key, s]) => [key, build(s)] as const);
      const optional = Object.entries(schema.optional ?? {}).map(([key, s]) =>
        [key, build(s)] as const
      );
      const known = new Set([...required, ...optional].map(([key]) => key));
      return (value, path) => {
        if (!isObject(value)) fail(path, expected, value);
        for (const key of Object.keys(value)) {
          if (!known.has(key)) {
            throw new ProtocolError(`Unknown field '${join(path, key).slice(0, 200)}'`);
          }
        }
        const out: Record<string, unknown> = {};
        for (const [key, check] of required) out[key] = check(value[key], join(path, key));
        for (const [key, check] of optional) {
          const item = value[key];
          if (item !== undefined) out[key] = check(item, join(path, key));
        }
        return out;
      };
    }
    case "union": {
      const byKind = new Map<Kind, Check<unknown>>();
      for (const member of schema.of) {
        const check = build(member);
        for (const kind of kindsOf(member)) {
          if (byKind.has(kind)) {
            throw new TypeError(`Union members must differ in JSON kind; two accept ${kind}`);
          }
          byKind.set(kind, check);
        }
      }
      return (value, path) => {
        const kind = kindOf(value);
        const check = kind === "other" ? undefined : byKind.get(kind);
        if (!check) fail(path, expected, value);
        return check(value, path);
      };
    }
  }
}

/**
 * Turn a schema into a validator. Do it once, at module load: the validator is a tree of closures with nothing
 * left to interpret per call.
 *
 * @example Validate a value
 * ```ts
 * import { compile } from "./schema.ts";
 * const check = compile({ type: "array", of: { type: "boolean" }, max: 2 } as const);
 * console.assert(check([true], "flags")[0] === true);
 * try {
 *   check([true, false, true], "flags");
 * } catch (error) {
 *   console.assert((error as Error).message === "Field 'flags' must be an array of 0 to 2 items, got an array");
 * }
 * ```
 *
 * @param schema The schema.
 * @returns A validator returning the value (objects rebuilt with only their known fields) typed as `Infer<S>`.
 * @throws {TypeError} For a union whose members share a JSON kind.
 */
export function compile<const S extends Schema>(schema: S): Check<Infer<S>> {
  return build(schema) as Check<Infer<S>>;
}
