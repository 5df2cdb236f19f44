// SPEC.md must describe every field of every schema: a daemon written from the spec alone must not need the code.
import { assert } from "../tests/_assert.ts";
import { CONTROLLER_MESSAGE_SCHEMAS, DAEMON_MESSAGE_SCHEMAS } from "./messages.ts";
import { LIST_ENTRY_SCHEMA, PROCESS_INFO_SCHEMA, RESPONSE_SCHEMAS } from "./replies.ts";
import { REQUEST_SCHEMAS, STREAM_RESUME_SCHEMA } from "./requests.ts";
import type { ObjectSchema } from "./schema.ts";
import { CLOSE_CODES, EXIT_SIGNALS, LOGIN_SHELL_COMMAND, SIGNALS } from "./constants.ts";

const spec = await Deno.readTextFile(new URL("./SPEC.md", import.meta.url));

/** The text of each `#### title` section, up to the next heading. */
function sections(): Map<string, string> {
  const out = new Map<string, string>();
  const parts = spec.split(/^#{2,4} /m);
  for (const part of parts.slice(1)) {
    const newline = part.indexOf("\n");
    out.set(part.slice(0, newline).trim(), part.slice(newline));
  }
  return out;
}
const bySection = sections();

function section(title: string): string {
  const text = bySection.get(title);
  assert(text !== undefined, `SPEC.md has no section '#### ${title}'`);
  return text;
}

/** Every field is a table row of the section, marked `?` exactly when it is optional. */
function assertRows(title: string, schema: ObjectSchema): void {
  const text = section(title);
  const fields = [
    ...Object.keys(schema.required).map((name) => [name, false] as const),
    ...Object.keys(schema.optional ?? {}).map((name) => [name, true] as const),
  ];
  for (const [name, optional] of fields) {
    const row = new RegExp(`^\\| \`${name}\`${optional ? "\\?" : ""} +\\|`, "m");
    assert(
      row.test(text),
      `SPEC.md section '${title}' lacks a row for ${name}${optional ? "?" : ""}`,
    );
  }
}

Deno.test("SPEC.md has a row for every field of every request and reply", () => {
  for (const [op, schema] of Object.entries(REQUEST_SCHEMAS)) assertRows(`${op} (args)`, schema);
  for (const [op, schema] of Object.entries(RESPONSE_SCHEMAS)) {
    if (Object.keys(schema.required).length === 0) {
      assert(section("Empty replies").includes(`\`${op}\``), `SPEC.md: ${op} replies {}`);
    } else assertRows(`${op} (reply)`, schema);
  }
  assertRows("processes (reply)", PROCESS_INFO_SCHEMA);
  const list = section("list (reply)");
  for (const name of Object.keys(LIST_ENTRY_SCHEMA.required)) {
    assert(list.includes(`\`${name}\``), name);
  }
  assert(list.includes("`target?`"));
  const attach = section("attach (args)");
  for (const name of Object.keys(STREAM_RESUME_SCHEMA.required)) {
    assert(attach.includes(`\`${name}\``), name);
  }
  assert(section("spawn (args)").includes("`cols` × `rows`"));
});

Deno.test("SPEC.md has a row for every field of every message", () => {
  for (const [t, schema] of Object.entries(DAEMON_MESSAGE_SCHEMAS)) assertRows(t, schema);
  for (const [t, schema] of Object.entries(CONTROLLER_MESSAGE_SCHEMAS)) assertRows(t, schema);
});

Deno.test("SPEC.md states the constants: signals, close codes, the login-shell sentinel", () => {
  for (const signal of SIGNALS) assert(section("signal (args)").includes(`"${signal}"`), signal);
  for (const signal of EXIT_SIGNALS) assert(spec.includes(`\`${signal}\``), signal);
  const codes = section("5. Close codes");
  for (const code of Object.values(CLOSE_CODES)) assert(codes.includes(`| ${code} `), String(code));
  assert(spec.includes(JSON.stringify(LOGIN_SHELL_COMMAND).replace("\\u0000", "\\0")));
});
