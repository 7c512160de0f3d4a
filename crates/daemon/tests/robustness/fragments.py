# Fragment sprayer for the robustness tests: IPv4 fragments of TCP segments to one
# service address and port, in every shape (first, middle, last, out of order,
# overlapping, never completed), from the client's own address. Bounded by a count.
# Prints "sent N".
import socket, struct, sys, random

src, dst, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(11)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
src_b, dst_b = socket.inet_aton(src), socket.inet_aton(dst)

def frag(ident, offset_units, more, data):
    flags = (0x2000 if more else 0) | offset_units
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(data), ident, flags, 64, 6, 0, src_b, dst_b) + data

sent = 0
while sent < count:
    ident = rng.randrange(0, 65536)
    tcp = struct.pack("!HHIIBBHHH", rng.randrange(1024, 65535), port, rng.randrange(0, 1 << 32), 0, 0x50, 0x02, 64240, 0, 0)
    body = tcp + bytes(rng.randrange(0, 256) for _ in range(64))
    shape = sent % 6
    if shape == 0:    # first only
        pieces = [(0, True, body[:24])]
    elif shape == 1:  # middle only
        pieces = [(3, True, body[24:48])]
    elif shape == 2:  # last, then first: out of order, middle never comes
        pieces = [(6, False, body[48:]), (0, True, body[:24])]
    elif shape == 3:  # overlapping
        pieces = [(0, True, body[:32]), (2, True, body[16:48]), (4, False, body[32:])]
    elif shape == 4:  # complete, in order
        pieces = [(0, True, body[:40]), (5, False, body[40:])]
    else:             # tiny first fragment: not even the ports
        pieces = [(0, True, body[:8]), (1, False, body[8:])]
    for off, more, data in pieces:
        try:
            s.sendto(frag(ident, off, more, data), (dst, 0))
        except OSError:
            pass
        sent += 1
print("sent %d" % sent)
