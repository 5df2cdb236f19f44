import { assert, assertEquals } from "../tests/_assert.ts";
import {
  CLOSE_CODES,
  DAEMON_ID_PATTERN,
  EXIT_SIGNALS,
  FATAL_CLOSE_CODES,
  isDaemonId,
  LOGIN_SHELL_COMMAND,
  SIGNALS,
  stopsReconnecting,
} from "./constants.ts";

Deno.test("daemon ids: 1-128 of A-Z a-z 0-9 . _ : @ -", () => {
  for (const id of ["w", "worker-1", "a.b_c:d@e", "x".repeat(128)]) assert(isDaemonId(id), id);
  for (const id of ["", "x".repeat(129), "a b", "a/b", "ü", "a\n", 5, null]) {
    assert(!isDaemonId(id), String(id));
  }
  assertEquals(DAEMON_ID_PATTERN.source, "^[A-Za-z0-9._:@-]{1,128}$");
});

Deno.test("close codes: only a refused handshake and a mismatched identity stop reconnecting", () => {
  assertEquals([...FATAL_CLOSE_CODES].sort(), [4000, 4001]);
  for (const code of Object.values(CLOSE_CODES)) {
    assertEquals(stopsReconnecting(code), code === 4000 || code === 4001, String(code));
  }
  assert(!stopsReconnecting(1006));
});

Deno.test("signals a controller may send are names an exit may report; the login-shell sentinel starts with NUL", () => {
  for (const signal of SIGNALS) assert(EXIT_SIGNALS.includes(signal), signal);
  assertEquals(new Set(EXIT_SIGNALS).size, EXIT_SIGNALS.length);
  assertEquals(LOGIN_SHELL_COMMAND, "\0login-shell");
});
