/**
 * `sandd ls`, `sandd stat`, `sandd rm`, `sandd mkdir`, `sandd mv`: a worker's file system.
 *
 * @module
 */

import {
  COMMON_OPTIONS,
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  location,
  noMore,
  parse,
  remoteLocation,
} from "./_args.ts";
import { withController } from "./_connect.ts";
import { json, modeString, out, size, table } from "./_format.ts";
import { EXIT, usageError } from "./exit_codes.ts";

/** Help of the file-system commands, by name. */
export const FS_USAGE: Record<string, string> = {
  ls: `Usage: sandd ls WORKER:PATH [-l] [--json]

List a directory on a worker (a file lists as itself).

Options:
  -l, --long          type and mode, size, modification time, name (and a symlink's target)
  --json              print { "entries": [...] }
  -h, --help          print this and exit

${CONNECTION_HELP}`,
  stat: `Usage: sandd stat WORKER:PATH [--json]

Describe a path on a worker (a final symlink is not followed).

Options:
  --json              print { type, size, mode, mtime, uid, gid }
  -h, --help          print this and exit

${CONNECTION_HELP}`,
  rm: `Usage: sandd rm WORKER:PATH [-r]

Remove a file (or, with -r, a directory and everything in it) on a worker.

Options:
  -r, --recursive     remove directories and their contents
  -h, --help          print this and exit

${CONNECTION_HELP}`,
  mkdir: `Usage: sandd mkdir WORKER:PATH [-p]

Create a directory on a worker.

Options:
  -p, --parents       create missing parents; an existing directory is not an error
  -h, --help          print this and exit

${CONNECTION_HELP}`,
  mv: `Usage: sandd mv WORKER:FROM TO

Rename a path on a worker. TO is a path on the same worker, written as PATH or WORKER:PATH.

Options:
  -h, --help          print this and exit

${CONNECTION_HELP}`,
};

/**
 * Run one of the file-system commands.
 *
 * @param name `ls`, `stat`, `rm`, `mkdir` or `mv`.
 * @param args The arguments after it.
 * @returns The exit code.
 */
export async function fsCommand(name: string, args: string[]): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      ...COMMON_OPTIONS,
      ...CONNECTION_OPTIONS,
      ...(name === "ls" ? { long: { type: "boolean", short: "l" } } : {}),
      ...(name === "rm" ? { recursive: { type: "boolean", short: "r" } } : {}),
      ...(name === "mkdir" ? { parents: { type: "boolean", short: "p" } } : {}),
    } as const,
  );
  if (values.help) {
    await out(FS_USAGE[name]!);
    return EXIT.OK;
  }
  const at = remoteLocation(positionals[0]);
  let to: string | undefined;
  if (name === "mv") {
    const second = positionals[1];
    if (second === undefined) throw usageError("Missing TO");
    const target = location(second);
    if (target.worker !== null && target.worker !== at.worker) {
      throw usageError(`mv stays on one worker: '${positionals[0]}' to '${second}'`);
    }
    to = target.path;
    noMore(positionals, 2);
  } else {
    noMore(positionals, 1);
  }
  return await withController(values, async (controller) => {
    const fs = controller.fs(at.worker);
    switch (name) {
      case "ls": {
        const stat = await fs.stat(at.path);
        const entries = stat.type === "directory"
          ? await fs.list(at.path)
          : [{ path: at.path.split("/").at(-1) ?? at.path, ...stat }];
        entries.sort((a, b) => a.path.localeCompare(b.path));
        if (values.json) {
          await json({
            entries: entries.map((e) => ({
              ...e,
              mtime: e.mtime === null ? null : new Date(e.mtime).toISOString(),
            })),
          });
        } else if (values.long) {
          await out(table(
            ["MODE", "SIZE", "MODIFIED", "NAME"],
            entries.map((e) => [
              modeString(e.type, e.mode),
              size(e.size),
              e.mtime === null
                ? "-"
                : new Date(e.mtime).toISOString().slice(0, 19).replace("T", " "),
              "target" in e && e.target !== undefined ? `${e.path} -> ${e.target}` : e.path,
            ]),
          ));
        } else if (entries.length) {
          await out(entries.map((e) => e.type === "directory" ? `${e.path}/` : e.path).join("\n"));
        }
        return EXIT.OK;
      }
      case "stat": {
        const stat = await fs.stat(at.path);
        const asJson = {
          path: at.path,
          ...stat,
          mtime: stat.mtime === null ? null : new Date(stat.mtime).toISOString(),
        };
        if (values.json) await json(asJson);
        else {
          await out(
            [
              `path   ${at.path}`,
              `type   ${stat.type}`,
              `size   ${stat.size}`,
              `mode   ${modeString(stat.type, stat.mode)} (0${(stat.mode & 0o7777).toString(8)})`,
              `mtime  ${asJson.mtime ?? "-"}`,
              `owner  ${stat.uid ?? "-"}:${stat.gid ?? "-"}`,
            ].join("\n"),
          );
        }
        return EXIT.OK;
      }
      case "rm":
        await fs.remove(at.path, values.recursive ? { recursive: true } : {});
        break;
      case "mkdir":
        await fs.mkdir(at.path, values.parents ? { recursive: true } : {});
        break;
      case "mv":
        await fs.move(at.path, to!);
        break;
    }
    if (values.json) await json({ ok: true });
    return EXIT.OK;
  });
}
