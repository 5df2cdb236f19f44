import { assert, assertEquals, assertThrows } from "../../tests/_assert.ts";
import { Policy } from "../policy/mod.ts";
import { forwardAllows, forwardPolicy, parseForwardPorts } from "./forward_policy.ts";

Deno.test("forward policy: default all ports on 127.0.0.1, none under an allow list, explicit wins", () => {
  const open = forwardPolicy({});
  assertEquals(open.ports.kind, "all");
  assertEquals([...open.hosts], ["127.0.0.1"]);
  assertEquals(open.maxTunnels, 256);
  assertEquals(forwardPolicy({ allow: ["ls"] }).ports.kind, "none");
  assertEquals(forwardPolicy({ allow: ["ls"], forward: "8080" }).ports.kind, "list");
  assertEquals(forwardPolicy({ forward: "none" }).ports.kind, "none");
  assert(forwardPolicy({ forwardHosts: ["::1"] }).hosts.has("::1"));
});

Deno.test("forward policy: port lists and ranges", () => {
  const ports = parseForwardPorts(" 22 , 8000-8002,65535");
  for (const port of [22, 8000, 8001, 8002, 65535]) {
    assert(forwardAllows(ports, port), String(port));
  }
  for (const port of [21, 23, 7999, 8003, 1]) assert(!forwardAllows(ports, port), String(port));
  for (const bad of ["", "x", "0", "65536", "5-4", "1,", "1-2-3", "-1"]) {
    assertThrows(() => parseForwardPorts(bad), RangeError, "Forward ports");
  }
});

Deno.test("forward policy: a policy file's fields are validated", () => {
  const policy = new Policy({ forward: "3000", forwardHosts: ["::1"], maxTunnels: 3 });
  assertEquals(policy.options.forward, "3000");
  assertThrows(() => new Policy({ forward: "nope" }), RangeError, "Forward ports");
  assertThrows(() => new Policy({ forward: 80 as unknown as string }), TypeError, "forward");
  assertThrows(() => new Policy({ forwardHosts: ["a b"] }), RangeError, "forwardHosts[0]");
  assertThrows(() => new Policy({ maxTunnels: 0 }), RangeError, "maxTunnels");
});
