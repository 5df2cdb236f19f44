// Base64 for exec's binary stdin and output (`encoding: "base64"`).
import { Buffer } from "node:buffer";
import { badRequest } from "./_errors.ts";

export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

export function decodeBase64(text: string, field: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw badRequest(`Field '${field}' must be base64, got ${JSON.stringify(text.slice(0, 40))}`);
  }
  const buffer = Buffer.from(text, "base64");
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}
