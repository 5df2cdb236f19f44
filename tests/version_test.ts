// The version lives in protocol/deno.json; the server and daemon packages must carry the same number.
import { VERSION } from "../protocol/version.ts";
import { assertEquals } from "./_assert.ts";

async function versionOf(path: string): Promise<unknown> {
  const config = JSON.parse(await Deno.readTextFile(new URL(path, import.meta.url)));
  return config.version;
}

Deno.test("the three packages carry the version of protocol/deno.json", async () => {
  assertEquals(await versionOf("../deno.json"), VERSION);
  assertEquals(await versionOf("../daemon/deno.json"), VERSION);
  assertEquals(await versionOf("../protocol/deno.json"), VERSION);
});

Deno.test("the server package publishes no daemon code and the packages import each other by name", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const include: string[] = config.publish.include;
  assertEquals(
    include.some((path) => path.startsWith("daemon") || path.startsWith("protocol")),
    false,
  );
  for (const dir of ["../server/", "../daemon/"]) {
    for await (const entry of Deno.readDir(new URL(dir, import.meta.url))) {
      if (!entry.isFile || !entry.name.endsWith(".ts")) continue;
      const text = await Deno.readTextFile(new URL(dir + entry.name, import.meta.url));
      assertEquals(
        /from "(\.\.\/)+protocol\//.test(text),
        false,
        `${dir}${entry.name} imports protocol/ by path`,
      );
      assertEquals(
        /from "(\.\.\/)+(server|daemon)\//.test(text),
        false,
        `${dir}${entry.name} crosses packages`,
      );
    }
  }
});
