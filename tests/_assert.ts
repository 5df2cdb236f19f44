// Assertions over node:assert/strict, shaped like the std ones the design card wanted (std is not reachable).
import nodeAssert from "node:assert/strict";

export function assert(value: unknown, message?: string): asserts value {
  nodeAssert.ok(value, message);
}

export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, message);
}

export function assertGreater(actual: number, expected: number, message?: string): void {
  nodeAssert.ok(actual > expected, message ?? `Expected ${actual} > ${expected}`);
}

export function assertLess(actual: number, expected: number, message?: string): void {
  nodeAssert.ok(actual < expected, message ?? `Expected ${actual} < ${expected}`);
}

// deno-lint-ignore no-explicit-any
type ErrorClass<E extends Error> = new (...args: any[]) => E;

export async function assertRejects<E extends Error = Error>(
  fn: () => Promise<unknown>,
  ErrorClass?: ErrorClass<E>,
  includes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (error) {
    if (ErrorClass && !(error instanceof ErrorClass)) {
      throw new Error(
        `Expected ${ErrorClass.name}, got ${(error as Error)?.name}: ${(error as Error)?.message}`,
      );
    }
    if (includes && !String((error as Error)?.message).includes(includes)) {
      throw new Error(
        `Expected message to include '${includes}', got '${(error as Error)?.message}'`,
      );
    }
    return error as E;
  }
  throw new Error("Expected the promise to reject");
}

export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  ErrorClass?: ErrorClass<E>,
  includes?: string,
): E {
  try {
    fn();
  } catch (error) {
    if (ErrorClass && !(error instanceof ErrorClass)) {
      throw new Error(
        `Expected ${ErrorClass.name}, got ${(error as Error)?.name}: ${(error as Error)?.message}`,
      );
    }
    if (includes && !String((error as Error)?.message).includes(includes)) {
      throw new Error(
        `Expected message to include '${includes}', got '${(error as Error)?.message}'`,
      );
    }
    return error as E;
  }
  throw new Error("Expected the function to throw");
}
