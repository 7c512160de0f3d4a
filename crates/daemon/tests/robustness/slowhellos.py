# Slow-client generator for the robustness tests: opens N connections from one source
# address to the service, sends each the first half of a TLS ClientHello and then
# nothing, and watches what the server does. Bounded by a wall-clock limit. Prints
# "attempted A connected C reset R first_reset S last_reset S" (seconds since start).
import socket, select, sys, time, errno, resource

src, dst, port, n, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
half = bytes.fromhex(sys.argv[6])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 256), hard))

start = time.monotonic()
pending = {}
for _ in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.bind((src, 0))
    s.connect_ex((dst, port))
    pending[s.fileno()] = s
poll = select.poll()
for fd in pending:
    poll.register(fd, select.POLLOUT)
connected, open_, resets = 0, {}, []
end = start + seconds
while time.monotonic() < end and (pending or open_):
    for fd, ev in poll.poll(100):
        if fd in pending:
            s = pending.pop(fd)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                connected += 1
                try:
                    s.send(half)
                except OSError:
                    pass
                open_[fd] = s
                poll.modify(fd, select.POLLIN)
            else:
                poll.unregister(fd)
                s.close()
        elif fd in open_:
            s = open_.pop(fd)
            poll.unregister(fd)
            try:
                s.recv(1)
            except OSError:
                pass
            resets.append(time.monotonic() - start)
            s.close()
first = min(resets) if resets else -1
last = max(resets) if resets else -1
print("attempted %d connected %d reset %d first_reset %.2f last_reset %.2f" % (n, connected, len(resets), first, last))
