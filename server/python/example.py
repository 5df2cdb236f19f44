"""Drive a SandD worker from Python: list workers, run a command, follow a process's output, move a file.

    SANDD_URL=http://127.0.0.1:8765 SANDD_API_TOKEN=... SANDD_DAEMON=worker-1 python3 example.py

Needs only Python's standard library and sandd.py beside it (or on PYTHONPATH).
"""

import os
import sys

from sandd import Client, SanddError


def main() -> int:
    url = os.environ.get("SANDD_URL", "http://127.0.0.1:8765")
    token = os.environ.get("SANDD_API_TOKEN")
    with Client(url, token) as c:
        daemons = c.daemons()
        if not daemons:
            print("no workers connected", file=sys.stderr)
            return 1
        worker = os.environ.get("SANDD_DAEMON") or daemons[0]["id"]
        print("workers:", ", ".join(f"{d['id']} ({d['platform']}/{d['arch']})" for d in daemons))

        # One command, one result.
        r = c.exec(worker, f"echo hello from {worker}; uname -s", timeout=30)
        print(r.stdout, end="")

        # A process: output followed as it comes (resumed by byte offset if the connection drops).
        proc = c.spawn(worker, "for i in 1 2 3; do echo step $i; sleep 0.1; done")
        for chunk in c.logs(worker, proc):
            sys.stdout.write(chunk.decode())
        print("exit status:", c.wait(worker, proc)["exitCode"])

        # stdin, then EOF.
        proc = c.spawn(worker, ["sort"], stdin=True)
        c.write_stdin(worker, proc, b"pear\napple\nfig\n")
        print("sorted:", b"".join(c.logs(worker, proc)).decode().split())

        # A file up and back down.
        path = os.environ.get("SANDD_TMP", "/tmp") + "/sandd-example.txt"
        c.upload(worker, path, b"written from Python\n")
        print("downloaded:", c.download(worker, path).decode().strip())
        c.remove(worker, path)

        try:
            c.exec("no-such-worker", "true")
        except SanddError as error:
            print("error code:", error.code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
