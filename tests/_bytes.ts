// Test helper: test data and its digest.
import { createHash } from "node:crypto";

/** `n` pseudo-random bytes (filled 64 KiB at a time, the most `getRandomValues` takes per call). */
export function randomBytes(n: number): Uint8Array {
  const bytes = new Uint8Array(n);
  for (let at = 0; at < n; at += 65536) crypto.getRandomValues(bytes.subarray(at, at + 65536));
  return bytes;
}

/** The SHA-256 of `bytes`, lower-case hex. */
export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
