# Holds one queue of a multi-queue TUN device, disabled (TUNSETQUEUE IFF_DETACH_QUEUE:
# it takes no packet, but the device counts it), until stdin closes: another process
# holding a queue, for the upgrade tests of [tun] offload. Prints "held" once it holds it.
# Runs only inside a test namespace.
import fcntl, os, struct, sys

TUNSETIFF, TUNSETQUEUE = 0x400454CA, 0x400454D9
IFF_TUN, IFF_NO_PI, IFF_MULTI_QUEUE, IFF_DETACH_QUEUE = 0x1, 0x1000, 0x100, 0x400

name = sys.argv[1]
fd = os.open("/dev/net/tun", os.O_RDWR)
flags = IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE
fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), flags))
fcntl.ioctl(fd, TUNSETQUEUE, struct.pack("16sH22x", b"", IFF_DETACH_QUEUE))
print("held", flush=True)
sys.stdin.read()
