/* The kernel SYN cookie program's maps, as the daemon sees them
 * (crates/daemon/src/fastpath/syncookie/maps.rs mirrors every struct here field for
 * field, and tests the sizes).
 *
 * SYNCOOKIE_LAYOUT is part of the bpffs pin path (/sys/fs/bpf/kracauer/<tun>/syncookie-v<layout>/):
 * change it with any change to these structs. */
#ifndef KRACAUER_SYNCOOKIE_H
#define KRACAUER_SYNCOOKIE_H

#include <linux/types.h>

#define SYNCOOKIE_LAYOUT 1

/* What the daemon tells the program (kr_sc_config, one entry). */
struct sc_config {
	__u64 root[2]; /* the root of the cookies' epoch keys (kracauer_core tcp::isn) */
	__u16 mss;     /* the MSS Kracauer announces: the IPv6 MTU − 60 */
	__u8 wscale;   /* the window scale Kracauer announces (ws_k) */
	__u8 flood;    /* 1: answer SYNs to service ports here and drop ACKs of no flow */
	__u32 pad;
};

/* A connection's client side, as its IPv4 packets carry it (network byte order). */
struct sc_key {
	__be32 client;
	__be32 service;
	__be16 client_port;
	__be16 service_port;
};

/* Counters of what the program did, per CPU (kr_sc_stats). */
enum sc_stat {
	SC_SYN_SEEN,	   /* SYNs to a service port */
	SC_SYN_ANSWERED,   /* of those, answered here with a cookie (flood mode) */
	SC_SYN_PASSED,	   /* of those, left to the TUN path (flood mode off) */
	SC_COOKIE_VALID,   /* ACKs of no known connection whose cookie checked: passed on */
	SC_COOKIE_INVALID, /* ACKs of no known connection whose cookie failed: dropped */
	SC_PASS_UNSURE,	   /* options that do not parse, SYN with data: the TUN path's */
	SC_PASS_ROUTE,	   /* no route back to the client: the TUN path's */
	SC_FAILED,	   /* a helper failed after the packet was changed: dropped */
	SC_NO_ROUTE,	   /* flood mode: a SYN whose answer has no way out (no route, a
			    * blackhole, a local address, the TUN itself): dropped, as the TUN
			    * path's answer would be lost */
	SC_STATS,
};

#endif
