// OpenSSH's sshd on loopback for the scp baseline, with throwaway keys in `dir`; null when sshd is not installed.

export async function runQuietly(cmd: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** A running sshd and the scp arguments that reach it as root. */
export interface Sshd extends AsyncDisposable {
  /** scp flags (port, key, no host key checks, batch mode). */
  scpArgs: string[];
  /** `root@127.0.0.1:` prefix for remote paths. */
  remote: string;
}

/** Why sshd/scp cannot be used here, or null when they can. */
export function sshdMissing(): string | null {
  const found = (paths: string[]) =>
    paths.some((p) => {
      try {
        return Deno.statSync(p).isFile;
      } catch {
        return false;
      }
    });
  if (!found(["/usr/sbin/sshd", "/usr/bin/sshd"])) {
    return "no sshd (apt-get install -y openssh-server)";
  }
  if (!found(["/usr/bin/scp", "/bin/scp"])) return "no scp (apt-get install -y openssh-client)";
  if (Deno.uid() !== 0) return "sshd on loopback needs root here (scp logs in as root)";
  return null;
}

/** Where {@linkcode startSshd} runs sshd. */
export interface SshdPlace {
  /** The address it listens on. @default "127.0.0.1" */
  hostname?: string;
  /** A command prefix to run it under (e.g. `ip netns exec NAME`). @default none */
  wrap?: string[];
}

/** Starts sshd on a free port (loopback unless `place` says), or returns null when it does not come up. */
export async function startSshd(dir: string, place: SshdPlace = {}): Promise<Sshd | null> {
  const hostname = place.hostname ?? "127.0.0.1";
  const wrap = place.wrap ?? [];
  const sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"].find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  })!;
  await runQuietly("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", `${dir}/host_key`]);
  await runQuietly("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", `${dir}/client_key`]);
  await Deno.copyFile(`${dir}/client_key.pub`, `${dir}/authorized_keys`);
  await Deno.mkdir("/run/sshd", { recursive: true });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  await Deno.writeTextFile(
    `${dir}/sshd_config`,
    [
      `Port ${port}`,
      `ListenAddress ${hostname}`,
      `HostKey ${dir}/host_key`,
      `AuthorizedKeysFile ${dir}/authorized_keys`,
      "PermitRootLogin prohibit-password",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      "StrictModes no",
      `PidFile ${dir}/sshd.pid`,
      "Subsystem sftp internal-sftp",
      "",
    ].join("\n"),
  );
  const child = new Deno.Command(wrap[0] ?? sshd, {
    args: [
      ...(wrap.length > 0 ? [...wrap.slice(1), sshd] : []),
      "-D",
      "-e",
      "-f",
      `${dir}/sshd_config`,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // exited already
    }
    await child.status;
  };
  // sshd has no readiness signal: retry a connection, bounded.
  for (let i = 0; i < 100; i++) {
    try {
      (await Deno.connect({ hostname, port })).close();
      return {
        scpArgs: [
          "-q",
          "-P",
          String(port),
          "-i",
          `${dir}/client_key`,
          "-o",
          "StrictHostKeyChecking=no",
          "-o",
          "UserKnownHostsFile=/dev/null",
          "-o",
          "BatchMode=yes",
        ],
        remote: `root@${hostname}:`,
        [Symbol.asyncDispose]: stop,
      };
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  await stop();
  return null;
}
