// Every validator of the protocol, with good and bad input: each request's args, each reply's data, each message
// in both directions. The tables are checked to cover every operation and message type, so a new one cannot be
// added without its tests.
import { assert, assertEquals, assertThrows } from "../tests/_assert.ts";
import {
  CONTROLLER_MESSAGE_SCHEMAS,
  DAEMON_MESSAGE_SCHEMAS,
  type Operation,
  OPERATIONS,
  parseControllerMessage,
  parseDaemonMessage,
} from "./messages.ts";
import { parseResponseData, RESPONSE_SCHEMAS } from "./replies.ts";
import { REQUEST_ARGS, REQUEST_SCHEMAS } from "./requests.ts";
import { ProtocolError } from "./errors.ts";
import { LOGIN_SHELL_COMMAND, MAX_PATH_LENGTH } from "./constants.ts";

const SNAP_SHA = "b".repeat(64);
const SNAP_INFO = {
  id: "20261201T182030Z-1a2b3c4d",
  createdAt: "2026-12-01T18:20:30.000Z",
  message: "before",
  tags: ["green"],
  fileCount: 3,
  dirCount: 1,
  symlinkCount: 1,
  totalSize: 12,
};

/** Good and bad args of the snapshot operations. */
const SNAPSHOT_REQUESTS = {
  snapshotCreate: {
    good: [{ path: "/w" }, { path: "/w", message: "m", tags: ["a", "b"] }],
    bad: [[{}, "'args.path'"], [{ path: "/w", tags: [""] }, "'args.tags[0]'"]] as [
      unknown,
      string,
    ][],
  },
  snapshotRestore: {
    good: [{ id: "s1", path: "/r" }, { id: "s1", path: "/r", overwrite: true }],
    bad: [[{ id: "../x", path: "/r" }, "'args.id'"]] as [unknown, string][],
  },
  snapshotList: {
    good: [{}, { tags: ["x"] }],
    bad: [[{ tags: "x" }, "'args.tags'"]] as [unknown, string][],
  },
  snapshotGet: { good: [{ id: "s1" }], bad: [[{ id: "" }, "'args.id'"]] as [unknown, string][] },
  snapshotDelete: {
    good: [{ id: "s.1_-" }],
    bad: [[{ id: "a/b" }, "'args.id'"]] as [unknown, string][],
  },
  snapshotHas: {
    good: [{ blobs: [] }, { blobs: [SNAP_SHA] }],
    bad: [[{ blobs: ["x"] }, "'args.blobs[0]'"]] as [unknown, string][],
  },
  snapshotBlobGet: {
    good: [{ sha256: SNAP_SHA, sid: 3, window: 1024 }],
    bad: [[{ sha256: SNAP_SHA, sid: 0, window: 1024 }, "'args.sid'"]] as [unknown, string][],
  },
  snapshotBlobPut: {
    good: [{ sha256: SNAP_SHA, sid: 3, window: 1024, size: 0 }],
    bad: [[{ sha256: SNAP_SHA, sid: 3, window: 1024 }, "'args.size'"]] as [unknown, string][],
  },
  snapshotExport: {
    good: [{ id: "s1", sid: 3, window: 1024 }, { id: "s1", sid: 3, window: 1, format: "manifest" }],
    bad: [[{ id: "s1", sid: 3, window: 1, format: "zip" }, "'args.format'"]] as [
      unknown,
      string,
    ][],
  },
  snapshotImport: {
    good: [{ sid: 3, window: 1024 }, { sid: 3, window: 1, format: "tar", message: "", tags: [] }],
    bad: [[{ sid: 3 }, "'args.window'"]] as [unknown, string][],
  },
};

/** Good and bad reply data of the snapshot operations. */
const SNAPSHOT_REPLIES = {
  snapshotCreate: {
    good: [{ ...SNAP_INFO, newBlobs: 1, newBytes: 4 }],
    bad: [[SNAP_INFO, "'data.newBlobs'"]] as [unknown, string][],
  },
  snapshotRestore: {
    good: [{ fileCount: 1, dirCount: 0, symlinkCount: 0, totalSize: 3 }],
    bad: [[{ fileCount: 1 }, "'data.dirCount'"]] as [unknown, string][],
  },
  snapshotList: {
    good: [{ snapshots: [] }, { snapshots: [SNAP_INFO] }],
    bad: [[
      { snapshots: [{ ...SNAP_INFO, createdAt: "yesterday" }] },
      "'data.snapshots[0].createdAt'",
    ]] as [
      unknown,
      string,
    ][],
  },
  snapshotGet: {
    good: [SNAP_INFO],
    bad: [[{ ...SNAP_INFO, totalSize: -1 }, "'data.totalSize'"]] as [unknown, string][],
  },
  snapshotDelete: {
    good: [{ freedBlobs: 0, freedBytes: 0 }],
    bad: [[{ freedBlobs: 0 }, "'data.freedBytes'"]] as [unknown, string][],
  },
  snapshotHas: {
    good: [{ missing: [SNAP_SHA] }],
    bad: [[{ missing: [1] }, "'data.missing[0]'"]] as [unknown, string][],
  },
  snapshotBlobGet: {
    good: [{ size: 5 }],
    bad: [[{ size: null }, "'data.size'"]] as [unknown, string][],
  },
  snapshotBlobPut: {
    good: [{ bytes: 5, stored: true }],
    bad: [[{ bytes: 5 }, "'data.stored'"]] as [unknown, string][],
  },
  snapshotExport: {
    good: [{ size: null }, { size: 10 }],
    bad: [[{}, "'data.size'"]] as [unknown, string][],
  },
  snapshotImport: {
    good: [SNAP_INFO],
    bad: [[{ ...SNAP_INFO, id: "" }, "'data.id'"]] as [unknown, string][],
  },
};

/** Good args of every operation, then bad args with the text the error must include. */
const REQUESTS: Record<Operation, { good: unknown[]; bad: [unknown, string][] }> = {
  spawn: {
    good: [
      { command: "echo hi", stdout: 1, window: 65536 },
      { command: ["ls", "-l"], stdout: 1, stderr: 2, stdin: 3, window: 1 },
      {
        command: LOGIN_SHELL_COMMAND,
        stdout: 1,
        window: 262144,
        pty: { cols: 80, rows: 24 },
        env: { TERM: "xterm" },
        cwd: "/tmp",
        timeoutMs: 1000,
        retainBytes: 0,
      },
    ],
    bad: [
      [{ command: "", stdout: 1, window: 1 }, "'args.command' must be a string of 1 to"],
      [{ command: [], stdout: 1, window: 1 }, "'args.command'"],
      [{ command: ["ls", 1], stdout: 1, window: 1 }, "'args.command[1]'"],
      [{ command: 5, stdout: 1, window: 1 }, "'args.command'"],
      [{ command: "x", stdout: 0, window: 1 }, "'args.stdout'"],
      [{ command: "x", stdout: 1, window: 0 }, "'args.window'"],
      [{ command: "x", stdout: 1, window: 1, pty: { cols: 0, rows: 1 } }, "'args.pty.cols'"],
      [{ command: "x", stdout: 1, window: 1, pty: { cols: 1 } }, "'args.pty.rows'"],
      [{ command: "x", stdout: 1, window: 1, timeoutMs: 0 }, "'args.timeoutMs'"],
      [{ command: "x", stdout: 1, window: 1, env: { A: 1 } }, "'args.env.A'"],
      [{ command: "x", stdout: 1, window: 1, killGraceMs: 5 }, "Unknown field 'args.killGraceMs'"],
      [{ command: "x", stdout: 1, window: 1, retainBytes: 2 ** 31 }, "'args.retainBytes'"],
    ],
  },
  attach: {
    good: [
      { proc: "p-1", window: 1024 },
      { proc: "p-1", window: 1024, stdout: { sid: 1, from: null }, stderr: { sid: 2, from: 7 } },
    ],
    bad: [
      [{ window: 1024 }, "'args.proc'"],
      [{ proc: "p-1", window: 1024, stdout: { sid: 1 } }, "'args.stdout.from'"],
      [{ proc: "p-1", window: 1024, stdout: { sid: 1, from: -1 } }, "'args.stdout.from'"],
    ],
  },
  detach: { good: [{ proc: "p" }], bad: [[{ proc: "" }, "'args.proc'"]] },
  signal: {
    good: [{ proc: "p", signal: "SIGTERM" }, { proc: "p", signal: "SIGWINCH" }],
    bad: [[{ proc: "p", signal: "SIGSEGV" }, "'args.signal' must be one of SIGTERM"]],
  },
  resize: {
    good: [{ proc: "p", cols: 65535, rows: 1 }],
    bad: [[{ proc: "p", cols: 65536, rows: 1 }, "'args.cols'"]],
  },
  processes: { good: [{}], bad: [[{ all: true }, "Unknown field 'args.all'"]] },
  upload: {
    good: [
      { path: "/a", sid: 1, window: 8 },
      { path: "/a", sid: 1, window: 8, mode: 0o4755, mkdirs: true, archive: "tar", size: 0 },
    ],
    bad: [
      [{ path: "/a", sid: 1, window: 8, mode: 0o10000 }, "'args.mode'"],
      [{ path: "/a", sid: 1, window: 8, archive: "zip" }, "'args.archive'"],
      [{ path: "x".repeat(MAX_PATH_LENGTH + 1), sid: 1, window: 8 }, "'args.path'"],
    ],
  },
  download: {
    good: [{ path: "/a", sid: 1, window: 8, from: 3 }, {
      path: "/d",
      sid: 1,
      window: 8,
      archive: "tar",
    }],
    bad: [[{ path: "/a", sid: 1, window: 8, from: 1.5 }, "'args.from'"]],
  },
  stat: { good: [{ path: "/" }], bad: [[{ path: "" }, "'args.path'"]] },
  list: {
    good: [{ path: "/", recursive: true }],
    bad: [[{ path: "/", recursive: "yes" }, "'args.recursive' must be a boolean"]],
  },
  mkdir: {
    good: [{ path: "/x", recursive: true, mode: 0o700 }],
    bad: [[{ path: "/x", mode: -1 }, "'args.mode'"]],
  },
  remove: { good: [{ path: "/x", recursive: false }], bad: [[{}, "'args.path'"]] },
  move: { good: [{ from: "/a", to: "/b" }], bad: [[{ from: "/a" }, "'args.to'"]] },
  watch: {
    good: [{ path: "/w", wid: 4, recursive: false }],
    bad: [[{ path: "/w", wid: 0 }, "'args.wid'"]],
  },
  unwatch: { good: [{ wid: 4 }], bad: [[{ wid: 2 ** 32 }, "'args.wid'"]] },
  // --- port forwarding ---
  connect: {
    good: [
      { port: 8080, sid: 1, input: 2, window: 65536 },
      { port: 1, sid: 3, input: 4, window: 1, host: "127.0.0.1" },
    ],
    bad: [
      [{ port: 0, sid: 1, input: 2, window: 1 }, "'args.port'"],
      [{ port: 65536, sid: 1, input: 2, window: 1 }, "'args.port'"],
      [{ port: 80, sid: 1, window: 1 }, "'args.input'"],
      [{ port: 80, sid: 1, input: 2, window: 1, host: "" }, "'args.host'"],
      [{ port: 80, sid: 1, input: 2, window: 1, host: "x".repeat(254) }, "'args.host'"],
    ],
  },
  // --- workspace snapshots ---
  ...SNAPSHOT_REQUESTS,
};

const RUNNING = {
  id: "p-1",
  pid: 42,
  command: ["sleep", "9"],
  startedAt: "2026-12-01T16:00:00.000Z",
  state: "running",
  exitCode: null,
  signal: null,
  pty: false,
  attached: 1,
};
/** A valid exit message, for variations. */
const EXITED = { t: "exit", proc: "p", exitCode: 0, signal: null, timedOut: false };
const KILLED = { ...RUNNING, state: "exited", exitCode: 137, signal: "SIGKILL", attached: 0 };
const SHA = "a".repeat(64);
const ENTRY = { path: "a/b", type: "file", size: 3, mode: 0o644, mtime: 1_700_000_000_000 };

/** Good reply data of every operation, then bad data with the text the error must include. */
const REPLIES: Record<Operation, { good: unknown[]; bad: [unknown, string][] }> = {
  spawn: {
    good: [{ proc: "p-1", pid: 42 }, { proc: "p-2", pid: 0 }],
    bad: [
      [{ pid: 42 }, "'data.proc'"],
      [{ proc: "p-1", pid: "42" }, "'data.pid'"],
      [{ proc: "p-1", pid: 42, extra: 1 }, "Unknown field 'data.extra'"],
    ],
  },
  attach: {
    good: [
      { ...RUNNING, timedOut: false, stdinOffset: 0, outputs: 2 },
      { ...KILLED, timedOut: true, stdinOffset: 5, outputs: 1 },
    ],
    bad: [
      [{ ...RUNNING, stdinOffset: 0, outputs: 2 }, "'data.timedOut'"],
      [{ ...RUNNING, timedOut: false, stdinOffset: -1, outputs: 2 }, "'data.stdinOffset'"],
      [
        { ...RUNNING, state: "exited", timedOut: false, stdinOffset: 0, outputs: 2 },
        "'data.exitCode' must be a number for an exited process",
      ],
    ],
  },
  detach: { good: [{}], bad: [[{ ok: 1 }, "Unknown field 'data.ok'"]] },
  signal: { good: [{}], bad: [[[], "'data' must be an object"]] },
  resize: { good: [{}], bad: [[null, "'data' must be an object"]] },
  processes: {
    good: [{ processes: [] }, { processes: [RUNNING, KILLED, { ...RUNNING, command: "ls" }] }],
    bad: [
      [{}, "'data.processes'"],
      [{ processes: 3 }, "'data.processes'"],
      [{ processes: [{ ...RUNNING, startedAt: "yesterday" }] }, "'data.processes[0].startedAt'"],
      [{ processes: [RUNNING, { ...RUNNING, state: "zombie" }] }, "'data.processes[1].state'"],
      [
        { processes: [{ ...RUNNING, exitCode: 0 }] },
        "'data.processes[0].exitCode' must be null for a running process",
      ],
      [
        { processes: [{ ...KILLED, exitCode: 9 }] },
        "'data.processes[0].exitCode' must be 128 + the signal number",
      ],
    ],
  },
  upload: {
    good: [
      { bytes: 3, sha256: SHA },
      { bytes: 3, sha256: SHA, files: 1, directories: 2, symlinks: 0 },
    ],
    bad: [
      [{ bytes: 3 }, "'data.sha256'"],
      [{ bytes: 3, sha256: "A".repeat(64) }, "'data.sha256' must be 64 lowercase hex digits"],
      [{ bytes: 3, sha256: SHA, files: -1 }, "'data.files'"],
    ],
  },
  download: {
    good: [{ size: 10, mode: 0o644, mtime: 0 }, { size: null, mode: 0o755, mtime: null }],
    bad: [
      [{ size: 10, mode: 0o644 }, "'data.mtime'"],
      [{ size: "10", mode: 0o644, mtime: 0 }, "'data.size'"],
    ],
  },
  stat: {
    good: [
      { type: "directory", size: 4096, mode: 0o755, mtime: -1000, uid: 0, gid: 0 },
      { type: "other", size: 0, mode: 0, mtime: null, uid: null, gid: null },
    ],
    bad: [
      [{ type: "fifo", size: 0, mode: 0, mtime: null, uid: null, gid: null }, "'data.type'"],
      [{ type: "file", size: 0, mode: 0, mtime: null, uid: null }, "'data.gid'"],
    ],
  },
  list: {
    good: [{ entries: [] }, { entries: [ENTRY, { ...ENTRY, type: "symlink", target: "../x" }] }],
    bad: [
      [{ entries: [ENTRY, { ...ENTRY, mode: 0o10000 }] }, "'data.entries[1].mode'"],
      [{ entries: [{ ...ENTRY, path: "" }] }, "'data.entries[0].path'"],
    ],
  },
  mkdir: { good: [{}], bad: [[{ path: "/x" }, "Unknown field 'data.path'"]] },
  remove: { good: [{}], bad: [["done", "'data' must be an object"]] },
  move: { good: [{}], bad: [[{ moved: true }, "Unknown field 'data.moved'"]] },
  watch: { good: [{}], bad: [[{ wid: 1 }, "Unknown field 'data.wid'"]] },
  unwatch: { good: [{}], bad: [[{ wid: 1 }, "Unknown field 'data.wid'"]] },
  // --- port forwarding ---
  connect: {
    good: [{ window: 65536 }],
    bad: [[{}, "'data.window'"], [{ window: 0 }, "'data.window'"]],
  },
  // --- workspace snapshots ---
  ...SNAPSHOT_REPLIES,
};

Deno.test("the test tables cover every operation", () => {
  assertEquals(Object.keys(REQUESTS).sort(), [...OPERATIONS].sort());
  assertEquals(Object.keys(REPLIES).sort(), [...OPERATIONS].sort());
  assertEquals(Object.keys(REQUEST_SCHEMAS).sort(), Object.keys(RESPONSE_SCHEMAS).sort());
});

Deno.test("every operation's args: good ones pass alone and inside a req, bad ones name the field", () => {
  for (const op of OPERATIONS) {
    for (const args of REQUESTS[op].good) {
      assertEquals(
        REQUEST_ARGS[op](args, "args") as unknown,
        args,
        `${op} ${JSON.stringify(args)}`,
      );
      const message = parseControllerMessage(JSON.stringify({ t: "req", rid: 7, op, args }));
      assert(message.t === "req" && message.op === op && message.rid === 7);
    }
    for (const [args, needle] of REQUESTS[op].bad) {
      assertThrows(() => REQUEST_ARGS[op](args, "args"), ProtocolError, needle);
      assertThrows(
        () => parseControllerMessage(JSON.stringify({ t: "req", rid: 7, op, args })),
        ProtocolError,
        needle,
      );
    }
  }
});

Deno.test("every operation's reply data: good ones pass, bad ones name the field", () => {
  for (const op of OPERATIONS) {
    for (const data of REPLIES[op].good) {
      assertEquals(parseResponseData(op, data) as unknown, data, `${op} ${JSON.stringify(data)}`);
    }
    for (const [data, needle] of REPLIES[op].bad) {
      assertThrows(() => parseResponseData(op, data), ProtocolError, needle);
    }
  }
  assertThrows(() => parseResponseData("nope" as Operation, {}), ProtocolError, '"nope"');
});

/** Good messages from the daemon, by type, then bad ones with the text the error must include. */
const FROM_DAEMON: Record<string, { good: unknown[]; bad: [unknown, string][] }> = {
  hello: {
    good: [{
      t: "hello",
      id: "worker-1",
      labels: { zone: "a" },
      hostname: "h",
      platform: "linux",
      arch: "x86_64",
      version: "0.1.0",
      pid: 1,
      processes: 0,
      instance: "i",
    }],
    bad: [
      [{ t: "hello", id: "x" }, "'labels'"],
      [
        {
          t: "hello",
          id: "bad id",
          labels: {},
          hostname: "h",
          platform: "linux",
          arch: "x",
          version: "1",
          pid: 1,
          processes: 0,
          instance: "i",
        },
        "'id' must be 1-128 of A-Z a-z 0-9 . _ : @ -",
      ],
      [
        {
          t: "hello",
          id: "w",
          labels: {},
          hostname: "h",
          platform: "linux",
          arch: "x",
          version: "1",
          pid: 1,
          processes: [],
          instance: "i",
        },
        "'processes' must be an integer",
      ],
    ],
  },
  ping: { good: [{ t: "ping" }], bad: [[{ t: "ping", at: 1 }, "Unknown field 'at'"]] },
  pong: { good: [{ t: "pong" }], bad: [[{ t: "pong", x: 1 }, "Unknown field 'x'"]] },
  res: {
    good: [
      { t: "res", rid: 3, ok: true, data: { proc: "p", pid: 1 } },
      { t: "res", rid: 3, ok: false, error: { code: "ENOENT", message: "x", path: "/a" } },
      { t: "res", rid: 3, ok: false, error: { code: "POLICY", message: "x", rule: "allow" } },
    ],
    bad: [
      [{ t: "res", rid: 3, ok: true }, "'data'"],
      [{ t: "res", rid: 3, ok: false, error: { message: "x" } }, "'error.code'"],
      [{ t: "res", rid: 3, ok: "yes", error: { code: "X", message: "x" } }, "'ok'"],
      [{ t: "res", rid: -3, ok: true, data: {} }, "'rid'"],
    ],
  },
  ack: {
    good: [{ t: "ack", sid: 1, offset: 0 }],
    bad: [[{ t: "ack", sid: 1, offset: 1.5 }, "'offset'"]],
  },
  eof: {
    good: [{ t: "eof", sid: 1, offset: 9 }, { t: "eof", sid: 1, offset: 9, sha256: SHA }],
    bad: [[{ t: "eof", sid: 1, offset: 9, sha256: "xyz" }, "'sha256'"]],
  },
  gap: {
    good: [{ t: "gap", sid: 1, from: 0, to: 5 }],
    bad: [
      [{ t: "gap", sid: 1, from: "0", to: 5 }, "'from'"],
      [{ t: "gap", sid: 1, from: 5, to: 5 }, "'to' must be greater than 'from'"],
    ],
  },
  reset: {
    good: [{ t: "reset", sid: 1, reason: "ENOENT: " + "x".repeat(4000) }],
    bad: [[{ t: "reset", sid: 0, reason: "" }, "'sid'"]],
  },
  exit: {
    good: [
      { t: "exit", proc: "p", exitCode: 0, signal: null, timedOut: false },
      { t: "exit", proc: "p", exitCode: 137, signal: "SIGKILL", timedOut: true },
      {
        t: "exit",
        proc: "p",
        exitCode: 130,
        signal: null,
        timedOut: false,
        truncated: [true, false],
      },
      // Revision 1: the ends of the streams ride on the exit.
      {
        t: "exit",
        proc: "p",
        exitCode: 0,
        signal: null,
        timedOut: false,
        eofs: [{ sid: 1, offset: 0 }, { sid: 2, offset: 12 }],
      },
    ],
    bad: [
      [{ t: "exit", proc: "p", exitCode: 256, signal: null, timedOut: false }, "'exitCode'"],
      [{ ...EXITED, eofs: [] }, "'eofs'"],
      [{ ...EXITED, eofs: [{ sid: 0, offset: 0 }] }, "'eofs[0].sid'"],
      [{ ...EXITED, eofs: [{ sid: 1, offset: -1 }] }, "'eofs[0].offset'"],
      [{ ...EXITED, eofs: [{ sid: 1, offset: 0, sha256: "0".repeat(64) }] }, "'eofs[0].sha256'"],
      [
        { ...EXITED, eofs: Array.from({ length: 17 }, (_, i) => ({ sid: i + 1, offset: 0 })) },
        "'eofs'",
      ],
      [{ t: "exit", proc: "p", exitCode: null, signal: "SIGKILL", timedOut: false }, "'exitCode'"],
      [{ t: "exit", proc: "p", exitCode: -1, signal: null, timedOut: false }, "'exitCode'"],
      [
        { t: "exit", proc: "p", exitCode: 1, signal: "SIGTERM", timedOut: false },
        "'exitCode' must be 128 + the signal number",
      ],
      [{ t: "exit", proc: "p", exitCode: 137, signal: "SIGNOPE", timedOut: false }, "'signal'"],
    ],
  },
  fsevent: {
    good: [{ t: "fsevent", wid: 1, kind: "modify", paths: ["/a"] }],
    bad: [[{ t: "fsevent", wid: 1, kind: "modify", paths: [""] }, "'paths[0]'"]],
  },
  error: {
    good: [{ t: "error", code: "PROTOCOL", message: "x" }],
    bad: [[{ t: "error", code: "PROTOCOL" }, "'message'"]],
  },
};

/** Good messages from the controller, by type, then bad ones with the text the error must include. */
const FROM_CONTROLLER: Record<string, { good: unknown[]; bad: [unknown, string][] }> = {
  welcome: {
    good: [{ t: "welcome", version: "0.1.0", heartbeatMs: 5000 }],
    bad: [[{ t: "welcome", version: "0.1.0", heartbeatMs: 99 }, "'heartbeatMs'"]],
  },
  ping: FROM_DAEMON.ping!,
  pong: FROM_DAEMON.pong!,
  req: {
    good: [{ t: "req", rid: 0, op: "processes", args: {} }],
    bad: [
      [{ t: "req", rid: 1, op: "rm-rf", args: {} }, "rm-rf"],
      [{ t: "req", rid: 1, op: "toString", args: {} }, "toString"],
      [{ t: "req", rid: 1, op: "processes" }, "'args' must be an object"],
      [{ t: "req", rid: -1, op: "processes", args: {} }, "'rid'"],
    ],
  },
  ack: FROM_DAEMON.ack!,
  eof: FROM_DAEMON.eof!,
  reset: FROM_DAEMON.reset!,
  error: FROM_DAEMON.error!,
};

Deno.test("every message in both directions: good ones parse, bad ones name the field", () => {
  const daemonTags = Object.keys(DAEMON_MESSAGE_SCHEMAS).filter((t) => t !== "resError").sort();
  assertEquals(Object.keys(FROM_DAEMON).sort(), daemonTags);
  assertEquals(Object.keys(FROM_CONTROLLER).sort(), Object.keys(CONTROLLER_MESSAGE_SCHEMAS).sort());
  const sides = [
    [FROM_DAEMON, parseDaemonMessage],
    [FROM_CONTROLLER, parseControllerMessage],
  ] as const;
  for (const [table, parse] of sides) {
    for (const [t, { good, bad }] of Object.entries(table)) {
      for (const message of good) {
        assertEquals(
          parse(JSON.stringify(message)) as unknown,
          message,
          `${t} ${JSON.stringify(message)}`,
        );
      }
      for (const [message, needle] of bad) {
        assertThrows(() => parse(JSON.stringify(message)), ProtocolError, needle);
      }
    }
  }
  // A message of one side is not a message of the other.
  assertThrows(
    () => parseDaemonMessage('{"t":"welcome","version":"1","heartbeatMs":500}'),
    ProtocolError,
    '"welcome" from daemon',
  );
  assertThrows(
    () => parseControllerMessage('{"t":"exit"}'),
    ProtocolError,
    '"exit" from controller',
  );
  assertThrows(() => parseDaemonMessage('{"t":"req"}'), ProtocolError, '"req"');
});

Deno.test("a refused message says which call it belonged to", () => {
  const exit = assertThrows(
    () =>
      parseDaemonMessage(
        '{"t":"exit","proc":"p-9","exitCode":null,"signal":null,"timedOut":false}',
      ),
    ProtocolError,
    "'exitCode'",
  );
  assertEquals(exit.about, { t: "exit", proc: "p-9" });
  const res = assertThrows(
    () => parseDaemonMessage('{"t":"res","rid":12,"ok":false,"error":{"code":""}}'),
    ProtocolError,
  );
  assertEquals(res.about, { t: "res", rid: 12 });
  const ack = assertThrows(
    () => parseDaemonMessage('{"t":"ack","sid":4,"offset":-1}'),
    ProtocolError,
  );
  assertEquals(ack.about, { t: "ack", sid: 4 });
  const event = assertThrows(
    () => parseDaemonMessage('{"t":"fsevent","wid":2,"kind":"x","paths":"a"}'),
    ProtocolError,
  );
  assertEquals(event.about, { t: "fsevent", wid: 2 });
  // Nothing readable: no ids.
  assertEquals(
    assertThrows(() => parseDaemonMessage('{"t":"res","rid":"x"}'), ProtocolError).about,
    { t: "res" },
  );
  assertEquals(assertThrows(() => parseDaemonMessage("{"), ProtocolError).about, undefined);
});

Deno.test("frames over the text limit are refused before parsing", () => {
  const big = JSON.stringify({ t: "error", code: "X", message: "x".repeat(4 * 1024 * 1024) });
  assertThrows(() => parseDaemonMessage(big), ProtocolError, "exceeds 4194304");
  assertThrows(() => parseControllerMessage(big), ProtocolError, "exceeds 4194304");
});
