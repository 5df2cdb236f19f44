"""Ad-hoc probe (not a bench section): what nats-server itself spends to relay bytes, with clients that cost
next to nothing (raw sockets, no parsing): one connection publishes SIZE-byte messages as fast as the server
takes them, another subscribes and only counts bytes. It prints the relay rate and nats-server's CPU per MiB.

Usage: python3 tests/bench/_nats_lean.py PORT SIZE MIB NATS_PID
(start the server first, e.g. `GOGC=400 nats-server -p 14222`, and pass its pid)."""
import os
import socket
import sys
import threading
import time


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.recv(65536)  # INFO
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
    wait_pong(s)
    return s


def wait_pong(s):
    seen = b""
    while b"PONG" not in seen:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("nats-server closed the connection")
        seen += chunk


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    port, size, mib, pid = (int(a) for a in sys.argv[1:])
    sub = connect(port)
    sub.sendall(b"SUB lean.probe 1\r\nPING\r\n")
    wait_pong(sub)
    pub = connect(port)
    count = (mib * 1024 * 1024 // size) // 8 * 8
    message = b"PUB lean.probe %d\r\n" % size + os.urandom(size) + b"\r\n"
    expected = count * (len(b"MSG lean.probe 1 %d\r\n" % size) + size + 2)

    def read():
        buffer = bytearray(1 << 20)
        got = 0
        while got < expected:
            n = sub.recv_into(buffer)
            if n == 0:
                raise SystemExit("nats-server closed the subscription")
            got += n

    reader = threading.Thread(target=read)
    reader.start()
    cpu = cpu_seconds(pid)
    start = time.time()
    batch = message * 8
    for _ in range(count // 8):
        pub.sendall(batch)
    reader.join()
    seconds = time.time() - start
    relayed = count * size / 1048576
    print(
        f"{size // 1024} KiB messages: {relayed / seconds:.0f} MiB/s, "
        f"nats-server {1000 * (cpu_seconds(pid) - cpu) / relayed:.2f} ms CPU per MiB"
    )


main()
