/**
 * The one assertion module of SandD's tests: the names and signatures of `@std/assert` (not reachable here),
 * implemented over `node:assert/strict`. Every test file imports its assertions from here, so a failure reads the
 * same everywhere and `assertEquals` always means a deep strict comparison.
 *
 * @example Use it
 * ```ts
 * import { assertEquals, assertThrows } from "./_assert.ts";
 * assertEquals({ a: [1, 2] }, { a: [1, 2] });
 * assertThrows(() => JSON.parse("{"), SyntaxError);
 * ```
 *
 * @module
 */
import nodeAssert from "node:assert/strict";

/** A class of errors, as `assertThrows` and `assertRejects` take it. */
// deno-lint-ignore no-explicit-any
export type ErrorClass<E extends Error = Error> = abstract new (...args: any[]) => E;

/** Any class, as `assertInstanceOf` takes it. */
// deno-lint-ignore no-explicit-any
export type AnyConstructor = abstract new (...args: any[]) => any;

function failure(message: string, msg?: string): nodeAssert.AssertionError {
  return new nodeAssert.AssertionError({ message: msg ? `${msg}: ${message}` : message });
}

function describe(value: unknown): string {
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  try {
    return typeof value === "string" ? JSON.stringify(value) : String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/**
 * Asserts that `expr` is truthy.
 *
 * @example Truthy
 * ```ts
 * import { assert } from "./_assert.ts";
 * assert([1].length === 1, "one element");
 * ```
 */
export function assert(expr: unknown, msg?: string): asserts expr {
  nodeAssert.ok(expr, msg);
}

/**
 * Asserts that `expr` is falsy.
 *
 * @example Falsy
 * ```ts
 * import { assertFalse } from "./_assert.ts";
 * assertFalse("".length);
 * ```
 */
export function assertFalse(expr: unknown, msg?: string): void {
  if (expr) throw failure(`Expected a falsy value, got ${describe(expr)}`, msg);
}

/**
 * Asserts that `actual` and `expected` are deeply equal (`deepStrictEqual`: same prototypes, `Object.is` for
 * primitives, element by element for arrays, maps, sets and typed arrays).
 *
 * @example Deep equality
 * ```ts
 * import { assertEquals } from "./_assert.ts";
 * assertEquals(new Uint8Array([1, 2]), new Uint8Array([1, 2]));
 * ```
 */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, msg);
}

/**
 * Asserts that `actual` and `expected` are not deeply equal.
 *
 * @example Deep inequality
 * ```ts
 * import { assertNotEquals } from "./_assert.ts";
 * assertNotEquals([1], [2]);
 * ```
 */
export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.notDeepStrictEqual(actual, expected, msg);
}

/**
 * Asserts that `actual` is `expected` (`Object.is`): the same primitive value or the same object.
 *
 * @example Identity
 * ```ts
 * import { assertStrictEquals } from "./_assert.ts";
 * const same = { a: 1 };
 * assertStrictEquals(same, same);
 * ```
 */
export function assertStrictEquals<T>(
  actual: unknown,
  expected: T,
  msg?: string,
): asserts actual is T {
  nodeAssert.strictEqual(actual, expected, msg);
}

/**
 * Asserts that `actual` is not `expected` (`Object.is`).
 *
 * @example Not identical
 * ```ts
 * import { assertNotStrictEquals } from "./_assert.ts";
 * assertNotStrictEquals({ a: 1 }, { a: 1 });
 * ```
 */
export function assertNotStrictEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.notStrictEqual(actual, expected, msg);
}

/**
 * Asserts that `actual` is neither `null` nor `undefined`.
 *
 * @example Exists
 * ```ts
 * import { assertExists } from "./_assert.ts";
 * assertExists(new Map([[1, "a"]]).get(1));
 * ```
 */
export function assertExists<T>(actual: T, msg?: string): asserts actual is NonNullable<T> {
  if (actual === null || actual === undefined) {
    throw failure(`Expected a value, got ${actual}`, msg);
  }
}

/**
 * Asserts that `actual` is an instance of `expectedType`.
 *
 * @example Instance
 * ```ts
 * import { assertInstanceOf } from "./_assert.ts";
 * assertInstanceOf(new RangeError("x"), Error);
 * ```
 */
export function assertInstanceOf<T extends AnyConstructor>(
  actual: unknown,
  expectedType: T,
  msg?: string,
): asserts actual is InstanceType<T> {
  if (!(actual instanceof expectedType)) {
    throw failure(`Expected an instance of ${expectedType.name}, got ${describe(actual)}`, msg);
  }
}

/**
 * Asserts that the string `actual` matches `expected`.
 *
 * @example Match
 * ```ts
 * import { assertMatch } from "./_assert.ts";
 * assertMatch("exit 127", /^exit \d+$/);
 * ```
 */
export function assertMatch(actual: string, expected: RegExp, msg?: string): void {
  nodeAssert.match(actual, expected, msg);
}

/**
 * Asserts that the string `actual` does not match `expected`.
 *
 * @example No match
 * ```ts
 * import { assertNotMatch } from "./_assert.ts";
 * assertNotMatch("ready", /error/);
 * ```
 */
export function assertNotMatch(actual: string, expected: RegExp, msg?: string): void {
  nodeAssert.doesNotMatch(actual, expected, msg);
}

/**
 * Asserts that the string `actual` contains `expected`.
 *
 * @example Includes
 * ```ts
 * import { assertStringIncludes } from "./_assert.ts";
 * assertStringIncludes("--root must be a directory", "--root");
 * ```
 */
export function assertStringIncludes(actual: string, expected: string, msg?: string): void {
  if (typeof actual !== "string" || !actual.includes(expected)) {
    throw failure(`Expected ${describe(actual)} to include ${describe(expected)}`, msg);
  }
}

/**
 * Asserts that the array `actual` contains every element of `expected` (deep strict equality).
 *
 * @example Array includes
 * ```ts
 * import { assertArrayIncludes } from "./_assert.ts";
 * assertArrayIncludes([[1], [2], [3]], [[2]]);
 * ```
 */
export function assertArrayIncludes<T>(
  actual: ArrayLike<T>,
  expected: ArrayLike<T>,
  msg?: string,
): void {
  const items = Array.from(actual);
  for (const wanted of Array.from(expected)) {
    if (!items.some((item) => isDeepStrictEqual(item, wanted))) {
      throw failure(`Expected the array to include ${describe(wanted)}`, msg);
    }
  }
}

function isDeepStrictEqual(a: unknown, b: unknown): boolean {
  try {
    nodeAssert.deepStrictEqual(a, b);
    return true;
  } catch {
    return false;
  }
}

/** Numbers and bigints, as the ordering assertions compare them. */
export type Comparable = number | bigint;

/**
 * Asserts that `actual > expected`.
 *
 * @example Greater
 * ```ts
 * import { assertGreater } from "./_assert.ts";
 * assertGreater(2, 1);
 * ```
 */
export function assertGreater<T extends Comparable>(actual: T, expected: T, msg?: string): void {
  if (!(actual > expected)) throw failure(`Expected ${actual} > ${expected}`, msg);
}

/**
 * Asserts that `actual >= expected`.
 *
 * @example Greater or equal
 * ```ts
 * import { assertGreaterOrEqual } from "./_assert.ts";
 * assertGreaterOrEqual(2, 2);
 * ```
 */
export function assertGreaterOrEqual<T extends Comparable>(
  actual: T,
  expected: T,
  msg?: string,
): void {
  if (!(actual >= expected)) throw failure(`Expected ${actual} >= ${expected}`, msg);
}

/**
 * Asserts that `actual < expected`.
 *
 * @example Less
 * ```ts
 * import { assertLess } from "./_assert.ts";
 * assertLess(1, 2);
 * ```
 */
export function assertLess<T extends Comparable>(actual: T, expected: T, msg?: string): void {
  if (!(actual < expected)) throw failure(`Expected ${actual} < ${expected}`, msg);
}

/**
 * Asserts that `actual <= expected`.
 *
 * @example Less or equal
 * ```ts
 * import { assertLessOrEqual } from "./_assert.ts";
 * assertLessOrEqual(2, 2);
 * ```
 */
export function assertLessOrEqual<T extends Comparable>(
  actual: T,
  expected: T,
  msg?: string,
): void {
  if (!(actual <= expected)) throw failure(`Expected ${actual} <= ${expected}`, msg);
}

/**
 * Fails the test with `msg`.
 *
 * @example Fail
 * ```ts
 * import { assertThrows, fail } from "./_assert.ts";
 * assertThrows(() => fail("never reached"));
 * ```
 */
export function fail(msg?: string): never {
  throw failure(msg ?? "Failed assertion");
}

/**
 * Asserts that an error is what was expected: an instance of `errorClass` whose message includes (a string) or
 * matches (a RegExp) `msgMatches`.
 */
function checkError(
  error: unknown,
  errorClass: ErrorClass | undefined,
  msgMatches: string | RegExp | undefined,
  msg: string | undefined,
): void {
  if (errorClass === undefined) return;
  if (!(error instanceof errorClass)) {
    throw failure(
      `Expected the error to be an instance of ${errorClass.name}, got ${describe(error)}`,
      msg,
    );
  }
  if (msgMatches === undefined) return;
  const message = error.message;
  const ok = typeof msgMatches === "string"
    ? message.includes(msgMatches)
    : msgMatches.test(message);
  if (!ok) {
    throw failure(
      `Expected the error message to ${typeof msgMatches === "string" ? "include" : "match"} ${
        typeof msgMatches === "string" ? JSON.stringify(msgMatches) : String(msgMatches)
      }, got ${JSON.stringify(message)}`,
      msg,
    );
  }
}

/**
 * Asserts that `fn` throws. With `errorClass`, the error must be an instance of it, and with `msgIncludes` its
 * message must include that string (or match that RegExp). Returns the error.
 *
 * @example Throws
 * ```ts
 * import { assertThrows } from "./_assert.ts";
 * const error = assertThrows(() => new Array(-1), RangeError, "length");
 * ```
 */
export function assertThrows(fn: () => unknown, msg?: string): unknown;
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  errorClass: ErrorClass<E>,
  msgIncludes?: string | RegExp,
  msg?: string,
): E;
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  errorClassOrMsg?: ErrorClass<E> | string,
  msgIncludes?: string | RegExp,
  msg?: string,
): E | unknown {
  const errorClass = typeof errorClassOrMsg === "function" ? errorClassOrMsg : undefined;
  const message = typeof errorClassOrMsg === "string" ? errorClassOrMsg : msg;
  let thrown = false;
  let error: unknown;
  try {
    fn();
  } catch (caught) {
    thrown = true;
    error = caught;
  }
  if (!thrown) throw failure("Expected the function to throw", message);
  checkError(error, errorClass, msgIncludes, message);
  return error;
}

/**
 * Asserts that the promise `fn` returns rejects (a synchronous throw fails the assertion). With `errorClass`, the
 * reason must be an instance of it, and with `msgIncludes` its message must include that string (or match that
 * RegExp). Resolves to the reason.
 *
 * @example Rejects
 * ```ts
 * import { assertRejects } from "./_assert.ts";
 * await assertRejects(() => Deno.stat("/nonexistent/sandd"), Deno.errors.NotFound);
 * ```
 */
export function assertRejects(fn: () => PromiseLike<unknown>, msg?: string): Promise<unknown>;
export function assertRejects<E extends Error = Error>(
  fn: () => PromiseLike<unknown>,
  errorClass: ErrorClass<E>,
  msgIncludes?: string | RegExp,
  msg?: string,
): Promise<E>;
export async function assertRejects<E extends Error = Error>(
  fn: () => PromiseLike<unknown>,
  errorClassOrMsg?: ErrorClass<E> | string,
  msgIncludes?: string | RegExp,
  msg?: string,
): Promise<E | unknown> {
  const errorClass = typeof errorClassOrMsg === "function" ? errorClassOrMsg : undefined;
  const message = typeof errorClassOrMsg === "string" ? errorClassOrMsg : msg;
  let promise: PromiseLike<unknown>;
  try {
    promise = fn();
  } catch (error) {
    throw failure(
      `Expected the function to return a rejecting promise; it threw ${describe(error)}`,
      message,
    );
  }
  if (typeof promise?.then !== "function") {
    throw failure("Expected the function to return a promise", message);
  }
  let rejected = false;
  let error: unknown;
  try {
    await promise;
  } catch (caught) {
    rejected = true;
    error = caught;
  }
  if (!rejected) throw failure("Expected the promise to reject", message);
  checkError(error, errorClass, msgIncludes, message);
  return error;
}
