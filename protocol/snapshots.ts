/**
 * Workspace snapshots on the wire: the request and reply schemas of the `snapshot*` operations, merged into
 * {@linkcode REQUEST_SCHEMAS} and {@linkcode RESPONSE_SCHEMAS} (kept here, in one block, so the other operations'
 * files change by one line each). See `SPEC.md` section 10.
 *
 * @module
 */

import { COUNT, ISO_TIME, OFFSET, PATH, SHA256, SID, WINDOW } from "./_atoms.ts";
import type { Schema } from "./schema.ts";

/** Longest snapshot message, in characters. */
export const MAX_SNAPSHOT_MESSAGE_LENGTH = 4096;
/** Most tags on one snapshot. */
export const MAX_SNAPSHOT_TAGS = 64;
/** Longest tag, in characters. */
export const MAX_SNAPSHOT_TAG_LENGTH = 128;
/** Most blob digests one `snapshotHas` asks about. */
export const MAX_SNAPSHOT_HAS = 10_000;

/** A snapshot id: a letter or digit, then letters, digits, `-`, `_` or `.`, at most 128 characters. */
export const SNAPSHOT_ID = {
  type: "string",
  min: 1,
  max: 128,
  pattern: /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/,
  rule: "a letter or digit, then up to 127 letters, digits, '-', '_' or '.'",
} as const;

/** A snapshot's message. */
export const SNAPSHOT_MESSAGE = { type: "string", max: MAX_SNAPSHOT_MESSAGE_LENGTH } as const;

/** A snapshot's tags. */
export const SNAPSHOT_TAGS = {
  type: "array",
  of: { type: "string", min: 1, max: MAX_SNAPSHOT_TAG_LENGTH },
  max: MAX_SNAPSHOT_TAGS,
} as const;

/** What describes a snapshot (`snapshotGet`, `snapshotList` items, and part of `snapshotCreate`'s reply). */
export const SNAPSHOT_INFO_FIELDS = {
  /** The snapshot id, chosen by the daemon. */
  id: SNAPSHOT_ID,
  /** When it was taken. */
  createdAt: ISO_TIME,
  /** The message given at creation (`""` when none). */
  message: SNAPSHOT_MESSAGE,
  /** The tags given at creation. */
  tags: SNAPSHOT_TAGS,
  /** Regular files in it. */
  fileCount: COUNT,
  /** Directories in it (the top directory not counted). */
  dirCount: COUNT,
  /** Symlinks in it. */
  symlinkCount: COUNT,
  /** Sum of the files' sizes, in bytes. */
  totalSize: OFFSET,
} as const;

/** A snapshot description. */
export const SNAPSHOT_INFO_SCHEMA = {
  type: "object",
  required: SNAPSHOT_INFO_FIELDS,
} as const satisfies Schema;

/** The format of a snapshot export or import stream. */
const FORMAT = { type: "literal", values: ["tar", "manifest"] } as const;

/** The `args` schema of every snapshot operation. */
export const SNAPSHOT_REQUEST_SCHEMAS = {
  /** Snapshot the directory `path` into the daemon's store. */
  snapshotCreate: {
    type: "object",
    required: { path: PATH },
    optional: { message: SNAPSHOT_MESSAGE, tags: SNAPSHOT_TAGS },
  },
  /** Restore a snapshot as the directory `path`. */
  snapshotRestore: {
    type: "object",
    required: { id: SNAPSHOT_ID, path: PATH },
    optional: { overwrite: { type: "boolean" } },
  },
  /** List the snapshots, newest first. */
  snapshotList: { type: "object", required: {}, optional: { tags: SNAPSHOT_TAGS } },
  /** Describe one snapshot. */
  snapshotGet: { type: "object", required: { id: SNAPSHOT_ID } },
  /** Delete a snapshot and the blobs no other snapshot uses. */
  snapshotDelete: { type: "object", required: { id: SNAPSHOT_ID } },
  /** Which of these blobs the store lacks. */
  snapshotHas: {
    type: "object",
    required: { blobs: { type: "array", of: SHA256, max: MAX_SNAPSHOT_HAS } },
  },
  /** Send a blob's bytes on stream `sid`. */
  snapshotBlobGet: { type: "object", required: { sha256: SHA256, sid: SID, window: WINDOW } },
  /** Store the bytes that follow on stream `sid` as the blob `sha256`. */
  snapshotBlobPut: {
    type: "object",
    required: { sha256: SHA256, sid: SID, window: WINDOW, size: OFFSET },
  },
  /** Send a snapshot on stream `sid`: its tree as a tar archive, or its manifest. */
  snapshotExport: {
    type: "object",
    required: { id: SNAPSHOT_ID, sid: SID, window: WINDOW },
    optional: { format: FORMAT },
  },
  /** Make a snapshot of what follows on stream `sid`: a tar archive, or a manifest whose blobs the store has. */
  snapshotImport: {
    type: "object",
    required: { sid: SID, window: WINDOW },
    optional: { format: FORMAT, message: SNAPSHOT_MESSAGE, tags: SNAPSHOT_TAGS },
  },
} as const satisfies Record<string, Schema>;

/** The reply schema of every snapshot operation. */
export const SNAPSHOT_RESPONSE_SCHEMAS = {
  /** The new snapshot, and what it added to the store. */
  snapshotCreate: {
    type: "object",
    required: {
      ...SNAPSHOT_INFO_FIELDS,
      /** Blobs the store did not have before. */
      newBlobs: COUNT,
      /** Bytes of those blobs. */
      newBytes: OFFSET,
    },
  },
  /** What was restored. */
  snapshotRestore: {
    type: "object",
    required: { fileCount: COUNT, dirCount: COUNT, symlinkCount: COUNT, totalSize: OFFSET },
  },
  /** The snapshots, newest first. */
  snapshotList: {
    type: "object",
    required: { snapshots: { type: "array", of: SNAPSHOT_INFO_SCHEMA, max: 1_000_000 } },
  },
  /** The snapshot. */
  snapshotGet: SNAPSHOT_INFO_SCHEMA,
  /** What the deletion freed. */
  snapshotDelete: { type: "object", required: { freedBlobs: COUNT, freedBytes: OFFSET } },
  /** The asked-for digests the store lacks, in the order asked. */
  snapshotHas: {
    type: "object",
    required: { missing: { type: "array", of: SHA256, max: MAX_SNAPSHOT_HAS } },
  },
  /** The blob's size (the bytes follow on the stream). */
  snapshotBlobGet: { type: "object", required: { size: OFFSET } },
  /** Bytes received; `stored` is false when the store had the blob already. */
  snapshotBlobPut: { type: "object", required: { bytes: OFFSET, stored: { type: "boolean" } } },
  /** The stream's size when known in advance (a manifest), else null (a tar archive). */
  snapshotExport: { type: "object", required: { size: { type: "nullable", of: OFFSET } } },
  /** The imported snapshot. */
  snapshotImport: SNAPSHOT_INFO_SCHEMA,
} as const satisfies Record<string, Schema>;
