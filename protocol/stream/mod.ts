/**
 * The stream layer both sides share: one credit sender and one credit receiver (window, acknowledgements, resend
 * from an offset, gaps, reset, optional incremental SHA-256). Pure: the caller moves the bytes.
 *
 * @module
 */

export {
  CreditError,
  CreditReceiver,
  type CreditReceiverOptions,
  type SkippedRange,
} from "./credit_receiver.ts";
export { CreditSender, type CreditSenderOptions, type ResendPiece } from "./credit_sender.ts";
