import { assertEquals, assertThrows } from "../tests/_assert.ts";
import { compile, describeSchema, type Infer, type Schema } from "./schema.ts";
import { ProtocolError } from "./errors.ts";

const THING = {
  type: "object",
  required: {
    id: { type: "string", min: 1, max: 8, pattern: /^[a-z]+$/, rule: "1-8 lowercase letters" },
    size: {
      type: "union",
      of: [{ type: "int", min: 0, max: 9 }, { type: "literal", values: ["big"] }],
    },
    tags: { type: "record", of: { type: "boolean" }, max: 2, keyMax: 3 },
  },
  optional: {
    parent: { type: "nullable", of: { type: "string", max: 8 } },
    items: { type: "array", of: { type: "int", min: 0, max: 1 }, min: 1, max: 2 },
    extra: { type: "any" },
  },
} as const satisfies Schema;

Deno.test("a compiled schema returns the value typed and rebuilt with only known fields", () => {
  const check = compile(THING);
  const value: Infer<typeof THING> = check(
    { id: "ab", size: "big", tags: { x: true }, parent: null, items: [1], extra: [{ a: 1 }] },
    "",
  );
  assertEquals(value, {
    id: "ab",
    size: "big",
    tags: { x: true },
    parent: null,
    items: [1],
    extra: [{ a: 1 }],
  });
  assertEquals(check({ id: "ab", size: 3, tags: {} }, "thing"), { id: "ab", size: 3, tags: {} });
  // `undefined` is absence (JSON has none, but a caller's object may).
  assertEquals(check({ id: "ab", size: 3, tags: {}, parent: undefined }, ""), {
    id: "ab",
    size: 3,
    tags: {},
  });
});

Deno.test("a compiled schema names the field and what it must be", () => {
  const check = compile(THING);
  const base = { id: "ab", size: 1, tags: {} };
  const cases: [unknown, string][] = [
    [null, "Field 'thing' must be an object, got null"],
    [{ ...base, id: "AB" }, "Field 'thing.id' must be 1-8 lowercase letters, got \"AB\""],
    [{ ...base, size: 10 }, "Field 'thing.size' must be an integer from 0 to 9, got number 10"],
    [{ ...base, size: "small" }, "Field 'thing.size' must be one of big, got \"small\""],
    [{ ...base, size: true }, "Field 'thing.size' must be an integer from 0 to 9 or one of big"],
    [{ ...base, tags: { a: 1 } }, "Field 'thing.tags.a' must be a boolean"],
    [{ ...base, tags: { a: true, b: true, c: true } }, "must be an object of at most 2 keys"],
    [{ ...base, tags: { long: true } }, "Key 'long...' of 'thing.tags' exceeds 3 characters"],
    [{ ...base, parent: 5 }, "Field 'thing.parent' must be a string of 0 to 8 characters or null"],
    [{ ...base, items: [] }, "Field 'thing.items' must be an array of 1 to 2 items, got an array"],
    [{ ...base, items: [2] }, "Field 'thing.items[0]' must be an integer from 0 to 1"],
    [{ ...base, toString: 1 }, "Unknown field 'thing.toString'"],
    [{ ...base, constructor: 1 }, "Unknown field 'thing.constructor'"],
    [{ size: 1, tags: {} }, "Field 'thing.id' must be 1-8 lowercase letters, got undefined"],
  ];
  for (const [value, message] of cases) {
    assertThrows(() => check(value, "thing"), ProtocolError, message);
  }
});

Deno.test("a union needs members of different JSON kinds", () => {
  assertThrows(
    () =>
      compile({
        type: "union",
        of: [{ type: "string", max: 1 }, { type: "literal", values: ["a"] }],
      }),
    TypeError,
    "two accept string",
  );
  assertEquals(describeSchema({ type: "literal", values: [true] }), "true");
  assertEquals(describeSchema({ type: "nullable", of: { type: "boolean" } }), "a boolean or null");
});

Deno.test("a __proto__ key stays data: it neither sets a prototype nor passes for another field", () => {
  const env = compile({ type: "record", of: { type: "string", max: 9 }, max: 4 } as const);
  const out = env(JSON.parse('{"__proto__":"x","A":"b"}'), "env");
  assertEquals(Object.getPrototypeOf(out), Object.prototype);
  assertEquals(Object.keys(out), ["__proto__", "A"]);
  const data = compile({ type: "record", of: { type: "any" }, max: 4 } as const);
  const polluted = data(JSON.parse('{"__proto__":{"proc":"p-1"}}'), "data");
  assertEquals(Object.getPrototypeOf(polluted), Object.prototype);
  const spawn = compile(
    { type: "object", required: { proc: { type: "string", max: 9 } } } as const,
  );
  assertThrows(() => spawn(polluted, "data"), ProtocolError, "Unknown field 'data.__proto__'");
});
