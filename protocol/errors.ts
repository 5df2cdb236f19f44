/**
 * Error classes shared by both sides of the protocol.
 *
 * @module
 */

/**
 * A peer sent something the protocol does not allow: a malformed frame, an unknown message type, a field of the
 * wrong type, or a frame for a stream that is not open.
 *
 * @example Catch a protocol error
 * ```ts
 * import { ProtocolError } from "./errors.ts";
 * const error = new ProtocolError("Field 'rid' must be a non-negative integer, got -1");
 * console.assert(error.code === "PROTOCOL");
 * ```
 */
export class ProtocolError extends Error {
  /** Stable error code. */
  readonly code: "PROTOCOL" = "PROTOCOL";
  /**
   * Make a protocol error.
   *
   * @param message What was wrong, naming the field and the value.
   * @param options Standard error options (`cause`).
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ProtocolError";
  }
}
