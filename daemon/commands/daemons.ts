/**
 * `sandd daemons`: the connected workers.
 *
 * @module
 */

import type { DaemonInfo } from "@sandd/server";
import {
  COMMON_OPTIONS,
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  list,
  noMore,
  pairs,
  parse,
  str,
} from "./_args.ts";
import { withController } from "./_connect.ts";
import { duration, json, labels, out, table } from "./_format.ts";
import { EXIT } from "./exit_codes.ts";

/** Help of `sandd daemons`. */
export const DAEMONS_USAGE = `Usage: sandd daemons [--label KEY=VALUE]... [--platform OS] [--json]

List the connected workers: id, labels, host, platform/arch, connected for, processes.

Options:
  --label KEY=VALUE   only workers with this label (repeat: all must match)
  --platform OS       only workers on this platform (linux, darwin, windows)
  --json              print { "daemons": [...] } (each with its "processes" count)
  -h, --help          print this and exit

${CONNECTION_HELP}`;

/**
 * Run `sandd daemons`.
 *
 * @param args The arguments after `daemons`.
 * @returns The exit code.
 */
export async function daemons(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    ...COMMON_OPTIONS,
    ...CONNECTION_OPTIONS,
    label: { type: "string", multiple: true },
    platform: { type: "string" },
  });
  if (values.help) {
    await out(DAEMONS_USAGE);
    return EXIT.OK;
  }
  noMore(positionals, 0);
  const filterLabels = pairs(list(values, "label"), "label");
  const platform = str(values, "platform");
  return await withController(values, async (controller) => {
    const found: DaemonInfo[] = await controller.daemons({
      ...(Object.keys(filterLabels).length ? { labels: filterLabels } : {}),
      ...(platform !== undefined ? { platform } : {}),
    });
    found.sort((a, b) => a.id.localeCompare(b.id));
    const counts = await Promise.all(found.map(async (d) => {
      try {
        return (await controller.processes(d.id)).filter((p) => p.state === "running").length;
      } catch {
        return null;
      }
    }));
    if (values.json) {
      await json({
        daemons: found.map((d, i) => ({
          ...d,
          connectedAt: new Date(d.connectedAt).toISOString(),
          processes: counts[i],
        })),
      });
      return EXIT.OK;
    }
    const now = Date.now();
    await out(table(
      ["ID", "LABELS", "HOST", "PLATFORM", "CONNECTED", "PROCESSES"],
      found.map((d, i) => [
        d.id,
        labels(d.labels),
        d.hostname,
        `${d.platform}/${d.arch}`,
        duration(now - new Date(d.connectedAt).getTime()),
        counts[i] === null ? "?" : String(counts[i]),
      ]),
    ));
    return EXIT.OK;
  });
}
