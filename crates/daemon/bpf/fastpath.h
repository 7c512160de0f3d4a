/* The kernel fast path's maps, as the daemon sees them (crates/daemon/src/fastpath/maps.rs
 * mirrors every struct here field for field, and tests the sizes).
 *
 * FASTPATH_LAYOUT is part of the bpffs pin path (/sys/fs/bpf/kracauer/<tun>/v<layout>/):
 * change it with any change to these structs, so that a daemon never adopts maps of
 * another layout. */
#ifndef KRACAUER_FASTPATH_H
#define KRACAUER_FASTPATH_H

#include <linux/types.h>

#define FASTPATH_LAYOUT 2

/* A flow's client side, as its IPv4 packets carry it (network byte order). */
struct fp_v4_key {
	__be32 client;
	__be32 service;
	__be16 client_port;
	__be16 service_port;
};

/* A flow's backend side, as the backend's IPv6 packets carry it (network byte order):
 * from the backend to the client's embedded address. */
struct fp_v6_key {
	__u8 backend[16];
	__u8 client[16];
	__be16 backend_port;
	__be16 client_port;
};

/* fp_flow.flags */
#define FP_TIMESTAMPS 1 /* the client uses timestamps: ts_offset applies */
#define FP_EXPAND 2	/* the client's windows are expanded by expand_ws */

/* What the program needs to translate a flow both ways (kracauer_core's Splice plus the
 * addresses), what it reports back (last seen, counts, the closing segments it passed),
 * and what a daemon needs to adopt the flow after a restart (its name and when it began):
 * the entry is the flow's whole spliced state, so the map outlives the daemon. */
struct fp_flow {
	__u32 delta;	 /* δ = b_isn − k_isn */
	__u32 ts_offset; /* backend TSval − ts_offset = the client's view */
	__u8 flags;
	__u8 backend_ws;
	__u8 client_ws;
	__u8 expand_ws;
	__be16 backend_port;
	__u8 name_len; /* bytes of name[] in use (0: no name) */
	__u8 pad;
	__u8 client6[16]; /* prefix + the client's IPv4 */
	__u8 backend6[16];
	/* Written by the program: CLOCK_MONOTONIC of the last packet it forwarded. */
	__u64 last_seen_ns;
	/* TCP payload bytes and packets forwarded: [to backend, to client]. A GSO
	 * super-packet counts once. The low 16 bits of packets[1] before a packet are its
	 * IPv4 Identification. */
	__u64 bytes[2];
	__u64 packets[2];
	/* Written by the daemon: CLOCK_MONOTONIC when the flow began (its SYN). */
	__u64 created_ns;
	/* Written by the program (to 1 only) when it passes a FIN from the client, a FIN
	 * from the backend, or a RST either way on to the TUN path. */
	__u8 client_fin;
	__u8 backend_fin;
	__u8 reset;
	__u8 pad2[5];
	/* Written by the daemon: the host name the flow was routed by (not NUL-terminated). */
	__u8 name[256];
};
/* Counters of what the program did, per CPU (kr_fp_stats). */
enum fp_stat {
	FP_TO_BACKEND,	  /* translated and sent to a backend */
	FP_TO_CLIENT,	  /* translated and sent to a client */
	FP_PASS_NO_FLOW,  /* TCP to or from no flow of the map: the TUN path's */
	FP_PASS_UNSURE,	  /* flags, options, fragments, extension headers, TTL: untouched */
	FP_PASS_ROUTE,	  /* no route, or the route into the TUN: untouched */
	FP_PASS_TOO_BIG,  /* over the route's MTU: untouched (the TUN path answers) */
	FP_FAILED,	  /* a helper failed after the packet was changed: dropped */
	FP_STATS,
};

#endif
