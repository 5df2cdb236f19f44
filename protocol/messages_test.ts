import { assertEquals, assertThrows } from "../tests/_assert.ts";
import { parseControllerMessage, parseDaemonMessage } from "./messages.ts";
import { ProtocolError } from "./errors.ts";

Deno.test("valid messages parse on both sides", () => {
  const spawn = parseControllerMessage(JSON.stringify({
    t: "req",
    rid: 1,
    op: "spawn",
    args: {
      command: ["ls", "-l"],
      stdout: 1,
      stderr: 2,
      window: 65536,
      env: { A: "b" },
      timeoutMs: 10,
    },
  }));
  assertEquals(spawn.t, "req");
  const exit = parseDaemonMessage(
    '{"t":"exit","proc":"p-1","exitCode":137,"signal":"SIGKILL","timedOut":false}',
  );
  assertEquals(exit.t, "exit");
  assertEquals(
    parseDaemonMessage(
      '{"t":"res","rid":3,"ok":false,"error":{"code":"ENOENT","message":"x","path":"/a"}}',
    ).t,
    "res",
  );
});

Deno.test("every malformed message is refused with a message naming the problem", () => {
  const cases: [string, string, "c" | "d"][] = [
    ["nope", "not valid JSON", "c"],
    ["[1]", "JSON object", "c"],
    ['{"t":"zap"}', '"zap"', "c"],
    ['{"t":"req","rid":1,"op":"rm-rf","args":{}}', "rm-rf", "c"],
    ['{"t":"req","rid":-1,"op":"processes","args":{}}', "'rid'", "c"],
    [
      '{"t":"req","rid":1,"op":"spawn","args":{"command":"","stdout":1,"window":1}}',
      "'args.command'",
      "c",
    ],
    [
      '{"t":"req","rid":1,"op":"spawn","args":{"command":"x","stdout":0,"window":1}}',
      "'args.stdout'",
      "c",
    ],
    [
      '{"t":"req","rid":1,"op":"spawn","args":{"command":"x","stdout":1,"window":1,"evil":1}}',
      "'args.evil'",
      "c",
    ],
    [
      '{"t":"req","rid":1,"op":"signal","args":{"proc":"p","signal":"SIGSEGV"}}',
      "'args.signal'",
      "c",
    ],
    [
      '{"t":"req","rid":1,"op":"spawn","args":{"command":"x","stdout":1,"window":1,"env":{"A":1}}}',
      "'args.env.A'",
      "c",
    ],
    ['{"t":"ack","sid":1,"offset":1.5}', "'offset'", "c"],
    ['{"t":"hello","id":"x"}', "'labels'", "d"],
    ['{"t":"exit","proc":"p","exitCode":256,"signal":null,"timedOut":false}', "'exitCode'", "d"],
    ['{"t":"gap","sid":1,"from":"0","to":5}', "'from'", "d"],
  ];
  for (const [text, needle, side] of cases) {
    assertThrows(
      () => side === "c" ? parseControllerMessage(text) : parseDaemonMessage(text),
      ProtocolError,
      needle,
    );
  }
});
