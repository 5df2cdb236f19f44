// Small validators for inbound JSON messages. Each check returns the value typed, or throws a ProtocolError naming
// the field path and what was wrong.
import { ProtocolError } from "./errors.ts";

export type Check<T> = (value: unknown, path: string) => T;

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") {
    return `"${value.length > 40 ? value.slice(0, 40) + "..." : value}"`;
  }
  if (typeof value === "object") return "an object";
  return `${typeof value} ${String(value)}`;
}

function fail(path: string, expected: string, value: unknown): never {
  throw new ProtocolError(`Field '${path}' must be ${expected}, got ${describe(value)}`);
}

export function int(min = 0, max: number = Number.MAX_SAFE_INTEGER): Check<number> {
  return (value, path) => {
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      fail(path, `an integer from ${min} to ${max}`, value);
    }
    return value;
  };
}

export function str(maxLength = 4096, minLength = 0): Check<string> {
  return (value, path) => {
    if (typeof value !== "string" || value.length > maxLength || value.length < minLength) {
      fail(path, `a string of ${minLength} to ${maxLength} characters`, value);
    }
    return value;
  };
}

export const bool: Check<boolean> = (value, path) => {
  if (typeof value !== "boolean") fail(path, "a boolean", value);
  return value;
};

export function literal<const T extends string>(...values: T[]): Check<T> {
  return (value, path) => {
    if (typeof value !== "string" || !(values as string[]).includes(value)) {
      fail(path, `one of ${values.join(", ")}`, value);
    }
    return value as T;
  };
}

export function nullable<T>(check: Check<T>): Check<T | null> {
  return (value, path) => value === null ? null : check(value, path);
}

export function array<T>(check: Check<T>, maxItems = 4096, minItems = 0): Check<T[]> {
  return (value, path) => {
    if (!Array.isArray(value) || value.length > maxItems || value.length < minItems) {
      fail(path, `an array of ${minItems} to ${maxItems} items`, value);
    }
    return value.map((item, index) => check(item, `${path}[${index}]`));
  };
}

export function record<T>(check: Check<T>, maxKeys = 4096): Check<Record<string, T>> {
  return (value, path) => {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      fail(path, "an object", value);
    }
    const entries = Object.entries(value);
    if (entries.length > maxKeys) fail(path, `an object of at most ${maxKeys} keys`, value);
    const out: Record<string, T> = {};
    for (const [key, item] of entries) out[key] = check(item, `${path}.${key}`);
    return out;
  };
}

export function oneOf<A, B>(a: Check<A>, b: Check<B>, expected: string): Check<A | B> {
  return (value, path) => {
    try {
      return a(value, path);
    } catch {
      try {
        return b(value, path);
      } catch {
        fail(path, expected, value);
      }
    }
  };
}

type Shape = Record<string, Check<unknown>>;
type Optional<S extends Shape> = Partial<{ [K in keyof S]: ReturnType<S[K]> }>;
type Required<S extends Shape> = { [K in keyof S]: ReturnType<S[K]> };

/** Validate an object with required fields `req` and optional fields `opt`; unknown fields are refused. */
export function object<R extends Shape, O extends Shape = Record<never, never>>(
  req: R,
  opt?: O,
): Check<Required<R> & Optional<O>> {
  return (value, path) => {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      fail(path || "message", "an object", value);
    }
    const input = value as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const key in input) {
      if (!(key in req) && !(opt && key in opt)) {
        throw new ProtocolError(`Unknown field '${path ? path + "." : ""}${key}'`);
      }
    }
    for (const key in req) out[key] = req[key]!(input[key], path ? `${path}.${key}` : key);
    if (opt) {
      for (const key in opt) {
        if (input[key] !== undefined) {
          out[key] = opt[key]!(input[key], path ? `${path}.${key}` : key);
        }
      }
    }
    return out as Required<R> & Optional<O>;
  };
}
