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
   * What the refused message was about: the ids it named, when they could be read. A controller uses them to
   * fail the call the message belonged to (the request `rid`, the process `proc`, the stream `sid`, the watch
   * `wid`) instead of leaving it pending. `t` is the message's type tag.
   */
  readonly about:
    | { t?: string; rid?: number; sid?: number; wid?: number; proc?: string }
    | undefined;
  /**
   * Make a protocol error.
   *
   * @param message What was wrong, naming the field and the value.
   * @param options Standard error options (`cause`), and `about` (see {@linkcode ProtocolError.about}).
   */
  constructor(
    message: string,
    options?: ErrorOptions & {
      about?: { t?: string; rid?: number; sid?: number; wid?: number; proc?: string };
    },
  ) {
    super(message, options);
    this.name = "ProtocolError";
    this.about = options?.about;
  }
}

/** What a refused message was about (see {@linkcode ProtocolError.about}). */
export type MessageContext = NonNullable<ProtocolError["about"]>;
