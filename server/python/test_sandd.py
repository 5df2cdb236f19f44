"""Tests of sandd.py against a real controller and daemon (run by tests/python_client_test.ts).

Environment: SANDD_URL, SANDD_API_TOKEN, SANDD_DAEMON (a connected daemon's id), SANDD_TMP (a directory on the
worker for files).
"""

import hashlib
import io
import os
import socket
import threading
import time
import unittest

import sandd

URL = os.environ.get("SANDD_URL", "")
TOKEN = os.environ.get("SANDD_API_TOKEN")
DAEMON = os.environ.get("SANDD_DAEMON", "")
TMP = os.environ.get("SANDD_TMP", "")


class CuttingProxy:
    """A TCP proxy to the controller that can drop every connection, or the first one after N bytes back."""

    def __init__(self, target_port: int, cut_after: int = 0):
        self._target = ("127.0.0.1", target_port)
        self._cut_after = cut_after
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._conns = []
        self._lock = threading.Lock()
        self.accepted = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._closed:
            try:
                a, _ = self._listener.accept()
            except OSError:
                return
            b = socket.create_connection(self._target)
            with self._lock:
                self._conns += [a, b]
                first = self.accepted == 0
                self.accepted += 1
            limit = self._cut_after if first and self._cut_after > 0 else None
            threading.Thread(target=self._pipe, args=(a, b, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(b, a, limit), daemon=True).start()

    def _pipe(self, src, dst, limit):
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if limit is not None and sent + len(data) >= limit:
                    dst.sendall(data[: limit - sent])
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def cut(self):
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self._closed = True
        self._listener.close()
        self.cut()


def controller_port() -> int:
    return int(URL.rsplit(":", 1)[1].split("/")[0])


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.c = sandd.Client(URL, TOKEN)

    def tearDown(self):
        self.c.close()

    def test_daemons(self):
        ids = [d["id"] for d in self.c.daemons()]
        self.assertIn(DAEMON, ids)
        self.assertEqual([d["id"] for d in self.c.daemons(labels={"lang": "python"})], [DAEMON])
        self.assertEqual(self.c.daemons(labels={"lang": "cobol"}), [])
        info = self.c.daemon(DAEMON)
        self.assertEqual(info["labels"], {"lang": "python"})
        self.assertEqual(self.c.wait_for_daemon(DAEMON, timeout=5)["id"], DAEMON)
        with self.assertRaises(sandd.NotFoundError) as caught:
            self.c.daemon("no-such-daemon")
        self.assertEqual(caught.exception.code, "DAEMON_NOT_FOUND")
        self.assertEqual(caught.exception.status, 404)

    def test_exec(self):
        r = self.c.exec(DAEMON, "echo hello; echo oops >&2; exit 3")
        self.assertEqual((r.stdout, r.stderr, r.exit_code), ("hello\n", "oops\n", 3))
        self.assertFalse(r.ok)
        r = self.c.exec(DAEMON, ["cat"], stdin=b"\x00\xffbinary")
        self.assertEqual(r.stdout_bytes, b"\x00\xffbinary")
        r = self.c.exec(DAEMON, "pwd; echo $GREETING", cwd=TMP, env={"GREETING": "hi"})
        self.assertEqual(r.stdout, f"{TMP}\nhi\n")
        r = self.c.exec(DAEMON, ["no-such-program-xyz"])
        self.assertEqual(r.exit_code, 127)
        with self.assertRaises(sandd.CommandTimeoutError) as caught:
            self.c.exec(DAEMON, "echo partial; sleep 30", timeout=0.5)
        self.assertEqual(caught.exception.code, "COMMAND_TIMEOUT")
        self.assertIn("partial", caught.exception.partial.get("stdout", ""))

    def test_many_calls_reuse_one_connection(self):
        for i in range(20):
            self.assertEqual(self.c.exec(DAEMON, ["echo", str(i)]).stdout, f"{i}\n")

    def test_keep_alive_connection_closed_by_the_controller(self):
        # The controller closes idle keep-alive connections (its header timeout); the next call opens a new one.
        idle = int(os.environ.get("SANDD_IDLE_CLOSE_MS", "0"))
        if not idle:
            self.skipTest("SANDD_IDLE_CLOSE_MS not set")
        self.assertEqual(self.c.exec(DAEMON, ["echo", "a"]).stdout, "a\n")
        time.sleep(idle / 1000 + 0.5)
        self.assertEqual(self.c.exec(DAEMON, ["echo", "b"]).stdout, "b\n")
        self.assertEqual(len(self.c.daemons(labels={"lang": "python"})), 1)

    def test_spawn_stdin_logs_wait(self):
        proc = self.c.spawn(DAEMON, ["cat"], stdin=True)
        self.assertEqual(self.c.write_stdin(DAEMON, proc, b"first ", eof=False), 6)
        # A stream of chunks (an iterable), then EOF.
        self.assertEqual(self.c.write_stdin(DAEMON, proc, iter([b"second ", b"third"])), 12)
        out = b"".join(self.c.logs(DAEMON, proc))
        self.assertEqual(out, b"first second third")
        status = self.c.wait(DAEMON, proc, timeout=10)
        self.assertEqual((status["state"], status["exitCode"]), ("exited", 0))
        self.assertIn(proc, [p["id"] for p in self.c.processes(DAEMON)])
        self.assertEqual(self.c.process(DAEMON, proc)["state"], "exited")

    def test_logs_from_offset_and_stderr(self):
        proc = self.c.spawn(DAEMON, "printf 0123456789; printf err >&2")
        self.c.wait(DAEMON, proc, timeout=10)
        stream = self.c.logs(DAEMON, proc, from_=4, follow=False)
        self.assertEqual(b"".join(stream), b"456789")
        self.assertEqual(stream.offset, 10)
        self.assertEqual(b"".join(self.c.logs(DAEMON, proc, stream="stderr")), b"err")

    def test_logs_resume_after_a_dropped_connection(self):
        # Lines for about a second; the connection is cut after the first chunk; nothing lost, nothing repeated.
        script = "for i in $(seq 1 300); do echo line $i; sleep 0.003; done"
        proc = self.c.spawn(DAEMON, script)
        proxy = CuttingProxy(controller_port())
        try:
            client = sandd.Client(f"http://127.0.0.1:{proxy.port}", TOKEN)
            stream = client.logs(DAEMON, proc)
            got = bytearray()
            for chunk in stream:
                got += chunk
                if stream.reconnects == 0 and proxy.accepted == 1 and len(got) > 0:
                    proxy.cut()
            expected = "".join(f"line {i}\n" for i in range(1, 301)).encode()
            self.assertEqual(bytes(got), expected)
            self.assertGreaterEqual(stream.reconnects, 1)
            self.assertGreaterEqual(proxy.accepted, 2)
            self.assertEqual(stream.gaps, [])
            client.close()
        finally:
            proxy.close()

    def test_signal(self):
        proc = self.c.spawn(DAEMON, ["sleep", "30"])
        self.assertEqual(self.c.status(DAEMON, proc)["state"], "running")
        self.c.signal(DAEMON, proc, "SIGKILL")
        status = self.c.wait(DAEMON, proc, timeout=10)
        self.assertEqual(status["signal"], "SIGKILL")
        with self.assertRaises(sandd.BadRequestError):
            self.c.signal(DAEMON, proc, "SIGNOPE")

    def test_upload_download(self):
        data = os.urandom(3 * 1024 * 1024 + 17)
        path = f"{TMP}/up.bin"
        r = self.c.upload(DAEMON, path, io.BytesIO(data), mode=0o600)
        self.assertEqual((r["bytes"], r["sha256"]), (len(data), hashlib.sha256(data).hexdigest()))
        self.assertEqual(self.c.stat(DAEMON, path)["size"], len(data))
        sink = io.BytesIO()
        self.assertEqual(self.c.download(DAEMON, path, sink), len(data))
        self.assertEqual(sink.getvalue(), data)
        self.assertEqual(self.c.download(DAEMON, path, from_=len(data) - 5), data[-5:])
        r = self.c.upload(DAEMON, f"{TMP}/sub/dir/small.txt", b"small", mkdirs=True)
        self.assertEqual(r["bytes"], 5)
        self.assertIn("small.txt", [e["path"] for e in self.c.list_dir(DAEMON, f"{TMP}/sub/dir")])
        self.c.move(DAEMON, f"{TMP}/sub/dir/small.txt", f"{TMP}/sub/moved.txt")
        self.assertEqual(self.c.download(DAEMON, f"{TMP}/sub/moved.txt"), b"small")
        self.c.remove(DAEMON, f"{TMP}/sub", recursive=True)
        with self.assertRaises(sandd.NotFoundError) as caught:
            self.c.download(DAEMON, f"{TMP}/sub/moved.txt")
        self.assertEqual(caught.exception.code, "ENOENT")

    def test_download_resumes_after_a_cut(self):
        data = os.urandom(2 * 1024 * 1024)
        path = f"{TMP}/resume.bin"
        self.c.upload(DAEMON, path, data)
        proxy = CuttingProxy(controller_port(), cut_after=300_000)
        try:
            client = sandd.Client(f"http://127.0.0.1:{proxy.port}", TOKEN)
            sink = io.BytesIO()
            self.assertEqual(client.download(DAEMON, path, sink), len(data))
            self.assertEqual(sink.getvalue(), data)
            self.assertGreaterEqual(proxy.accepted, 2)
            client.close()
        finally:
            proxy.close()

    def test_events(self):
        with self.c.events(timeout=30) as events:
            proc = self.c.spawn(DAEMON, ["true"])
            for event in events:
                if event.type == "exit" and event.data.get("process") == proc:
                    self.assertEqual(event.data["daemon"], DAEMON)
                    self.assertEqual(event.data["exitCode"], 0)
                    break

    def test_errors_carry_codes(self):
        bad = sandd.Client(URL, "not-the-right-token-at-all")
        with self.assertRaises(sandd.AuthError) as caught:
            bad.daemons()
        self.assertEqual((caught.exception.status, caught.exception.code), (401, "UNAUTHORIZED"))
        bad.close()
        with self.assertRaises(sandd.NotFoundError) as caught:
            self.c.status(DAEMON, "no-such-process")
        self.assertEqual(caught.exception.code, "UNKNOWN_PROCESS")
        with self.assertRaises(ValueError):
            self.c.exec(DAEMON, [])
        unreachable = sandd.Client("http://127.0.0.1:9", TOKEN, timeout=5)
        with self.assertRaises(sandd.UnreachableError) as caught:
            unreachable.daemons()
        self.assertEqual(caught.exception.code, "UNREACHABLE")


if __name__ == "__main__":
    unittest.main()
