#!/usr/bin/env python3
"""A long, lossy link between this machine and a network namespace, emulated per packet in user space.

The kernel here has no netem qdisc, so this does its work: two TUN devices, one in the root namespace
(HOST_ADDR) and one moved into a new namespace (PEER_ADDR); every IP packet the kernel routes into either is
read here, dropped with probability LOSS, and written into the other after RTT/2 (a FIFO per direction, so
order is kept as on a real path). TCP on both ends sees a real RTT and real losses: its own windows, slow start,
retransmissions and congestion control are what limit a transfer, as over a WAN. The MTU is large (like a
veth with GSO, where netem drops whole segments of up to 64 KiB), so LOSS applies per TCP segment.

Usage (root): _packet_link.py NETNS HOST_ADDR PEER_ADDR RTT_MS LOSS
Prints "ready" once the namespace and both devices are up; runs until stdin closes or SIGTERM, then removes the
namespace. Queues are bounded (tail drop past QUEUE_BYTES per direction, like a router's buffer).
"""
import collections
import fcntl
import os
import random
import select
import signal
import struct
import subprocess
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MTU = 65000
QUEUE_BYTES = 64 * 1024 * 1024


def run(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def main():
    netns, host_addr, peer_addr, rtt_ms, loss = sys.argv[1:6]
    one_way = float(rtt_ms) / 2000.0
    loss = float(loss)
    host_dev, peer_dev = netns[:10] + "h", netns[:10] + "p"
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    run("ip", "netns", "add", netns)
    try:
        host_fd = open_tun(host_dev)
        peer_fd = open_tun(peer_dev)
        run("ip", "link", "set", peer_dev, "netns", netns)
        run("ip", "addr", "add", host_addr + "/32", "peer", peer_addr, "dev", host_dev)
        run("ip", "link", "set", host_dev, "mtu", str(MTU), "up")
        ns = ("ip", "netns", "exec", netns)
        run(*ns, "ip", "link", "set", "lo", "up")
        run(*ns, "ip", "addr", "add", peer_addr + "/32", "peer", host_addr, "dev", peer_dev)
        run(*ns, "ip", "link", "set", peer_dev, "mtu", str(MTU), "up")
        # Each direction: packets in flight, (due time, bytes), and their total size.
        queues = {host_fd: collections.deque(), peer_fd: collections.deque()}
        queued = {host_fd: 0, peer_fd: 0}
        other = {host_fd: peer_fd, peer_fd: host_fd}
        counts = {"in": 0, "lost": 0, "tail": 0}
        print("ready", flush=True)
        watch = [host_fd, peer_fd, sys.stdin.fileno()]
        while not stopping:
            now = time.monotonic()
            for dst, queue in queues.items():
                while queue and queue[0][0] <= now:
                    _, packet = queue.popleft()
                    queued[dst] -= len(packet)
                    try:
                        os.write(dst, packet)
                    except BlockingIOError:
                        pass  # the receiving stack is full: a drop, as on a real path
            due = [q[0][0] for q in queues.values() if q]
            timeout = max(0.0, min(due) - time.monotonic()) if due else 1.0
            ready, _, _ = select.select(watch, [], [], timeout)
            now = time.monotonic()
            for fd in ready:
                if fd == sys.stdin.fileno():
                    if not os.read(fd, 4096):
                        stopping.append(True)
                    continue
                for _ in range(256):
                    try:
                        packet = os.read(fd, MTU + 64)
                    except BlockingIOError:
                        break
                    counts["in"] += 1
                    if loss > 0 and random.random() < loss:
                        counts["lost"] += 1
                        continue
                    dst = other[fd]
                    if queued[dst] + len(packet) > QUEUE_BYTES:
                        counts["tail"] += 1
                        continue
                    queues[dst].append((now + one_way, packet))
                    queued[dst] += len(packet)
        print("packets %(in)d, lost %(lost)d, tail-dropped %(tail)d" % counts, file=sys.stderr, flush=True)
    finally:
        subprocess.run(["ip", "netns", "del", netns], stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
