// SPDX-License-Identifier: MIT OR Apache-2.0 OR GPL-2.0-only
/* The kernel fast path: a tc ingress program that translates the data and ACK segments of
 * spliced flows (docs/architecture.md, "The kernel fast path").
 *
 * For a TCP segment of a flow in the maps it does what the TUN path does (kracauer_core's
 * Splice::to_backend / to_client and xlat::ipv4_to_ipv6 / ipv6_to_ipv4): IPv4↔IPv6 in
 * place, ack and SACK edges + δ, TSecr + ts_offset and the client's window expanded on the
 * way to the backend; seq − δ, TSval − ts_offset and the window rescaled on the way to the
 * client; checksums updated incrementally in whatever form the skb carries them; GSO
 * super-packets whole. It then routes the packet as if it came out of the TUN device
 * (bpf_fib_lookup with the TUN as input interface, so policy rules see what they see on
 * the TUN path) and hands it to the neighbour layer of the egress interface.
 *
 * Anything it is not sure of goes on untouched (TC_ACT_OK), to the TUN path: SYN, FIN,
 * RST, a segment without ACK, IPv4 options or fragments, IPv6 extension headers, TTL or
 * hop limit <= 1, TCP options that do not parse or that it does not rewrite alone (two
 * timestamps or SACK options), VLAN-tagged frames on a parent interface, no flow, no
 * route, a route into the TUN, or over the route's MTU. It never drops a packet it has not
 * changed. The one difference from the TUN path: the packet crosses one router, not two
 * (TTL and hop limit are decremented once).
 *
 * A FIN or RST of a flow in the map passes too, but the entry records that it did
 * (fp_flow.client_fin, backend_fin, reset): the entry is all a daemon that adopts the flow
 * after a restart knows of it. From the RST or the second FIN on, the flow is closing:
 * its segments pass to the TUN path too, before the daemon has taken the entry back. A
 * client that reuses the port at once (its new SYN answered by the SYN cookie program)
 * must not have its new connection translated with the old flow's offsets; the engine
 * tells the two apart. */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "fastpath.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

#define TCPOPT_EOL 0
#define TCPOPT_NOP 1
#define TCPOPT_SACK 5
#define TCPOPT_TIMESTAMP 8
#define MAX_OPTIONS 40
#define NO_OFFSET 0xff

/* Set by the loader: the TUN device's index (the input interface of route lookups). */
volatile const __u32 tun_ifindex = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct fp_v4_key);
	__type(value, struct fp_flow);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kr_fp_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct fp_v6_key);
	__type(value, struct fp_v4_key);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kr_fp_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, FP_STATS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kr_fp_stats SEC(".maps");

static __always_inline int count(enum fp_stat what, int verdict)
{
	__u32 key = what;
	__u64 *n = bpf_map_lookup_elem(&kr_fp_stats, &key);

	if (n)
		*n += 1;
	return verdict;
}

/* One's complement arithmetic on 32-bit partial sums, as the kernel's __wsum. */
static __always_inline __u32 csum_add(__u32 sum, __u32 v)
{
	sum += v;
	return sum + (sum < v);
}

static __always_inline __u32 csum_replace(__u32 sum, __u32 from, __u32 to)
{
	return csum_add(csum_add(sum, ~from), to);
}

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Where the options that the splice rewrites are, from the start of the TCP header. */
struct tcp_opts {
	__u8 ts_at;   /* the Timestamps option's kind byte, or NO_OFFSET */
	__u8 sack_at; /* the SACK option's kind byte, or NO_OFFSET */
	__u8 sack_blocks;
};

/* The option walk's state (one bpf_loop callback step per option byte or option). */
struct walk {
	__u8 buf[64]; /* the option bytes, zero after them */
	__u32 len;    /* option bytes in the header */
	__u32 pos;
	int error;
	struct tcp_opts o;
};

/* Walks the options as kracauer_core's TcpOptions does: EOL ends the walk, NOP is skipped,
 * a kind with a length below 2 or past the header is an error (the TUN path drops the
 * segment), a Timestamps option of length 10 and a SACK option of 8n + 2 bytes (n >= 1)
 * are rewritten, anything else is skipped. A second Timestamps or SACK option is left to
 * the TUN path too (an error here). Returns 1 to stop. */
static long walk_step(__u32 i, struct walk *w)
{
	__u32 pos = w->pos;

	if (pos >= w->len || pos >= MAX_OPTIONS)
		return 1;
	__u8 kind = w->buf[pos & 63];
	if (kind == TCPOPT_EOL)
		return 1;
	if (kind == TCPOPT_NOP) {
		w->pos = pos + 1;
		return 0;
	}
	if (pos + 1 >= w->len) {
		w->error = 1;
		return 1;
	}
	__u8 olen = w->buf[(pos + 1) & 63];
	if (olen < 2 || pos + olen > w->len) {
		w->error = 1;
		return 1;
	}
	if (kind == TCPOPT_TIMESTAMP && olen == 10) {
		if (w->o.ts_at != NO_OFFSET) {
			w->error = 1;
			return 1;
		}
		w->o.ts_at = sizeof(struct tcphdr) + pos;
	} else if (kind == TCPOPT_SACK && olen > 2 && (olen - 2) % 8 == 0) {
		if (w->o.sack_at != NO_OFFSET) {
			w->error = 1;
			return 1;
		}
		w->o.sack_at = sizeof(struct tcphdr) + pos;
		w->o.sack_blocks = (olen - 2) / 8;
	}
	w->pos = pos + olen;
	return 0;
}

/* Walks the options of the TCP header at `l4_off` in the skb (`doff` 32-bit words) into
 * `o`. Returns 0, or -1 when the TUN path should have the segment. */
static __always_inline int walk_options(struct __sk_buff *skb, __u32 l4_off, __u32 doff,
					struct tcp_opts *o)
{
	struct walk w = {};
	__u32 len = (doff * 4 - sizeof(struct tcphdr)) & 0x3f;

	w.o.ts_at = NO_OFFSET;
	w.o.sack_at = NO_OFFSET;
	w.len = len;
	if (len > MAX_OPTIONS)
		return -1;
	if (len > 0 && bpf_skb_load_bytes(skb, l4_off + sizeof(struct tcphdr), w.buf, len))
		return -1;
	bpf_loop(MAX_OPTIONS, walk_step, &w, 0);
	if (w.error)
		return -1;
	*o = w.o;
	return 0;
}

/* Checksum changes, split by the parity of the offset they happened at: a field at an
 * odd offset enters the 16-bit sum with its bytes swapped. */
struct diff {
	__u32 even;
	__u32 odd;
};

static __always_inline __u32 diff_total(struct diff *d)
{
	__u32 odd = d->odd;

	odd = (odd & 0xffff) + (odd >> 16);
	odd = (odd & 0xffff) + (odd >> 16);
	odd = ((odd & 0xff) << 8) | (odd >> 8);
	return csum_add(d->even, odd);
}

/* Reads and writes one 32-bit field of the TCP header in network order (adding or, with
 * `sub`, subtracting `delta`), and adds the change to `d`. */
static __always_inline int rewrite32(void *tcp, void *end, __u32 at, __u32 delta, int sub,
				     struct diff *d)
{
	__be32 *p = (__be32 *)((__u8 *)tcp + (at & 0x7f));

	if ((void *)(p + 1) > end)
		return -1;
	__be32 old = *p;
	__u32 host = bpf_ntohl(old);
	__be32 new = bpf_htonl(sub ? host - delta : host + delta);
	*p = new;
	if (at & 1)
		d->odd = csum_replace(d->odd, old, new);
	else
		d->even = csum_replace(d->even, old, new);
	return 0;
}

static __always_inline void rewrite_window(struct tcphdr *th, __u16 window, struct diff *d)
{
	__be16 old = th->window;
	__be16 new = bpf_htons(window);

	th->window = new;
	d->even = csum_replace(d->even, old, new);
}

/* What both directions carry from the checks to the rewrite. */
struct seg {
	__u32 l3_len;	  /* the IP packet's length (IPv4 Total Length, IPv6 40 + payload) */
	__u32 tcp_len;	  /* TCP header and payload */
	__u32 doff;	  /* TCP header length in 32-bit words */
	__u8 ttl;	  /* TTL or hop limit, before the decrement */
	__u8 tos;	  /* TOS or traffic class */
	struct tcp_opts o;
};

/* Checks the TCP header at `tcp` and walks its options: 0 when the fast path may take it. */
static __always_inline int check_tcp(struct __sk_buff *skb, struct tcphdr *th, void *end,
				     __u32 l4_off, struct seg *s)
{
	if ((void *)(th + 1) > end)
		return -1;
	/* Only ACK-bearing segments without SYN, FIN or RST: those belong to the TUN path,
	 * whose state machine must see them. */
	if (!th->ack || th->syn || th->fin || th->rst)
		return -1;
	s->doff = th->doff;
	if (s->doff < 5 || s->doff * 4 > s->tcp_len)
		return -1;
	if ((void *)((__u8 *)th + s->doff * 4) > end)
		return -1;
	return walk_options(skb, l4_off, s->doff, &s->o);
}

/* Routes the translated packet as the kernel would route it coming out of the TUN, and
 * checks the route's MTU for one segment. Returns 0 with `fib` filled, or a stat. */
static __always_inline int route(struct __sk_buff *skb, struct bpf_fib_lookup *fib,
				 __u32 l3_header, struct seg *s)
{
	__u32 seg_len = l3_header + s->tcp_len;

	if (skb->gso_size) {
		/* One segment of the super-packet: headers plus gso_size bytes. */
		seg_len = l3_header + s->doff * 4 + skb->gso_size;
	}
	if (seg_len > 0xffff)
		return FP_PASS_TOO_BIG;
	fib->tot_len = seg_len;
	fib->ifindex = tun_ifindex;
	long rc = bpf_fib_lookup(skb, fib, sizeof(*fib), BPF_FIB_LOOKUP_SKIP_NEIGH);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return FP_PASS_TOO_BIG;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS || fib->ifindex == tun_ifindex)
		return FP_PASS_ROUTE;
	return 0;
}

static __always_inline int redirect(struct bpf_fib_lookup *fib)
{
	struct bpf_redir_neigh nh = {};

	nh.nh_family = fib->family;
	if (fib->family == AF_INET6)
		__builtin_memcpy(nh.ipv6_nh, fib->ipv6_dst, 16);
	else
		nh.ipv4_nh = fib->ipv4_dst;
	return bpf_redirect_neigh(fib->ifindex, &nh, sizeof(nh), 0);
}

static __always_inline void account(struct fp_flow *f, int to_client, __u32 payload)
{
	f->last_seen_ns = bpf_ktime_get_ns();
	__sync_fetch_and_add(&f->bytes[to_client], payload);
	__sync_fetch_and_add(&f->packets[to_client], 1);
}

/* A FIN or RST of flow `f` passes on to the TUN path: the entry records it. Each field is
 * only ever set to 1, so CPUs racing on one entry lose nothing. */
static __always_inline int mark_close(struct fp_flow *f, struct tcphdr *th, int to_client)
{
	if (th->rst)
		f->reset = 1;
	else if (to_client)
		f->backend_fin = 1;
	else
		f->client_fin = 1;
	return count(FP_PASS_UNSURE, TC_ACT_OK);
}

/* Whether flow `f` is closing (a RST, or a FIN each way, passed): the TUN path's. */
static __always_inline int closing(struct fp_flow *f)
{
	return f->reset || (f->client_fin && f->backend_fin);
}

/* Client → backend: IPv4 in, IPv6 out. */
static __always_inline int to_backend(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	struct seg s = {};

	if ((void *)(ip + 1) > end)
		return TC_ACT_OK;
	if (ip->version != 4 || ip->ihl != 5 || ip->protocol != IPPROTO_TCP)
		return count(FP_PASS_UNSURE, TC_ACT_OK);
	if (ip->frag_off & bpf_htons(0x3fff) || ip->ttl <= 1)
		return count(FP_PASS_UNSURE, TC_ACT_OK);
	s.l3_len = bpf_ntohs(ip->tot_len);
	if (s.l3_len < sizeof(*ip) + sizeof(struct tcphdr) || ETH_HLEN + s.l3_len > skb->len)
		return count(FP_PASS_UNSURE, TC_ACT_OK);
	s.tcp_len = s.l3_len - sizeof(*ip);
	s.ttl = ip->ttl;
	s.tos = ip->tos;
	struct tcphdr *th = (void *)(ip + 1);
	if ((void *)(th + 1) > end)
		return count(FP_PASS_UNSURE, TC_ACT_OK);

	struct fp_v4_key key = {
		.client = ip->saddr,
		.service = ip->daddr,
		.client_port = th->source,
		.service_port = th->dest,
	};
	struct fp_flow *f = bpf_map_lookup_elem(&kr_fp_flows, &key);
	if (f && (th->fin || th->rst))
		return mark_close(f, th, 0);
	if (check_tcp(skb, th, end, ETH_HLEN + sizeof(*ip), &s))
		return count(FP_PASS_UNSURE, TC_ACT_OK);
	if (!f || closing(f))
		return count(FP_PASS_NO_FLOW, TC_ACT_OK);

	struct bpf_fib_lookup fib = {};
	fib.family = AF_INET6;
	fib.l4_protocol = IPPROTO_TCP;
	fib.sport = th->source;
	fib.dport = f->backend_port;
	fib.flowinfo = bpf_htonl((__u32)s.tos << 20);
	__builtin_memcpy(fib.ipv6_src, f->client6, 16);
	__builtin_memcpy(fib.ipv6_dst, f->backend6, 16);
	int why = route(skb, &fib, sizeof(struct ipv6hdr), &s);
	if (why)
		return count(why, TC_ACT_OK);

	/* The addresses leave the pseudo-header sum; the ports one word of the header. */
	__u32 pseudo = 0;
	pseudo = csum_replace(pseudo, ip->saddr, 0);
	pseudo = csum_replace(pseudo, ip->daddr, 0);
	__u32 *c6 = (__u32 *)f->client6, *b6 = (__u32 *)f->backend6;
	for (int i = 0; i < 4; i++) {
		pseudo = csum_add(pseudo, c6[i]);
		pseudo = csum_add(pseudo, b6[i]);
	}
	__u32 payload = s.tcp_len - s.doff * 4;

	/* Nothing is changed before this point; a failure below drops the packet. */
	if (skb->len > ETH_HLEN + s.l3_len &&
	    bpf_skb_change_tail(skb, ETH_HLEN + s.l3_len, 0))
		return count(FP_PASS_UNSURE, TC_ACT_OK);
	if (bpf_skb_change_proto(skb, bpf_htons(ETH_P_IPV6), 0))
		return count(FP_PASS_UNSURE, TC_ACT_OK);

	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	th = data + ETH_HLEN + sizeof(struct ipv6hdr);
	if ((void *)(th + 1) > end || (void *)((__u8 *)th + s.doff * 4) > end)
		return count(FP_FAILED, TC_ACT_SHOT);

	struct diff sum = {};
	__u32 delta = f->delta;
	if (delta) {
		if (rewrite32(th, end, 8, delta, 0, &sum))
			return count(FP_FAILED, TC_ACT_SHOT);
		if (s.o.sack_at != NO_OFFSET) {
			for (int i = 0; i < 8; i++) {
				if (i >= s.o.sack_blocks * 2)
					break;
				if (rewrite32(th, end, s.o.sack_at + 2 + i * 4, delta, 0, &sum))
					return count(FP_FAILED, TC_ACT_SHOT);
			}
		}
	}
	if ((f->flags & FP_TIMESTAMPS) && f->ts_offset && s.o.ts_at != NO_OFFSET) {
		if (rewrite32(th, end, s.o.ts_at + 6, f->ts_offset, 0, &sum))
			return count(FP_FAILED, TC_ACT_SHOT);
	}
	if (f->flags & FP_EXPAND) {
		__u32 w = (__u32)bpf_ntohs(th->window) << (f->expand_ws & 0xf);
		rewrite_window(th, w > 0xffff ? 0xffff : w, &sum);
	}
	__be16 old_dport = th->dest;
	th->dest = f->backend_port;
	sum.even = csum_replace(sum.even, old_dport, th->dest);

	__u32 check_at = ETH_HLEN + sizeof(struct ipv6hdr) + offsetof(struct tcphdr, check);
	if (bpf_l4_csum_replace(skb, check_at, 0, diff_total(&sum), 0) ||
	    bpf_l4_csum_replace(skb, check_at, 0, pseudo, BPF_F_PSEUDO_HDR))
		return count(FP_FAILED, TC_ACT_SHOT);

	struct ipv6hdr ip6 = {};
	ip6.version = 6;
	ip6.priority = s.tos >> 4;
	ip6.flow_lbl[0] = (s.tos & 0xf) << 4;
	ip6.payload_len = bpf_htons(s.tcp_len);
	ip6.nexthdr = IPPROTO_TCP;
	ip6.hop_limit = s.ttl - 1;
	__builtin_memcpy(&ip6.saddr, f->client6, 16);
	__builtin_memcpy(&ip6.daddr, f->backend6, 16);
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6), BPF_F_RECOMPUTE_CSUM))
		return count(FP_FAILED, TC_ACT_SHOT);
	__be16 proto = bpf_htons(ETH_P_IPV6);
	if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_proto), &proto, 2, 0))
		return count(FP_FAILED, TC_ACT_SHOT);

	account(f, 0, payload);
	count(FP_TO_BACKEND, 0);
	return redirect(&fib);
}

/* Backend → client: IPv6 in, IPv4 out. */
static __always_inline int to_client(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + ETH_HLEN;
	struct seg s = {};

	if ((void *)(ip6 + 1) > end)
		return TC_ACT_OK;
	if (ip6->version != 6 || ip6->nexthdr != IPPROTO_TCP || ip6->hop_limit <= 1)
		return count(FP_PASS_UNSURE, TC_ACT_OK);
	s.tcp_len = bpf_ntohs(ip6->payload_len);
	s.l3_len = sizeof(*ip6) + s.tcp_len;
	/* IPv4's Total Length must hold the packet once the header is 20 bytes shorter. */
	if (s.tcp_len < sizeof(struct tcphdr) || s.tcp_len + sizeof(struct iphdr) > 0xffff ||
	    ETH_HLEN + s.l3_len > skb->len)
		return count(FP_PASS_UNSURE, TC_ACT_OK);
	s.ttl = ip6->hop_limit;
	s.tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
	struct tcphdr *th = (void *)(ip6 + 1);
	if ((void *)(th + 1) > end)
		return count(FP_PASS_UNSURE, TC_ACT_OK);

	struct fp_v6_key bkey = {
		.backend_port = th->source,
		.client_port = th->dest,
	};
	__builtin_memcpy(bkey.backend, &ip6->saddr, 16);
	__builtin_memcpy(bkey.client, &ip6->daddr, 16);
	struct fp_v4_key *key = bpf_map_lookup_elem(&kr_fp_backends, &bkey);
	struct fp_v4_key k = {};
	struct fp_flow *f = 0;
	if (key) {
		k = *key;
		f = bpf_map_lookup_elem(&kr_fp_flows, &k);
	}
	if (f && (th->fin || th->rst))
		return mark_close(f, th, 1);
	if (check_tcp(skb, th, end, ETH_HLEN + sizeof(*ip6), &s))
		return count(FP_PASS_UNSURE, TC_ACT_OK);
	if (!f || closing(f))
		return count(FP_PASS_NO_FLOW, TC_ACT_OK);

	struct bpf_fib_lookup fib = {};
	fib.family = AF_INET;
	fib.l4_protocol = IPPROTO_TCP;
	fib.sport = k.service_port;
	fib.dport = k.client_port;
	fib.tos = s.tos;
	fib.ipv4_src = k.service;
	fib.ipv4_dst = k.client;
	int why = route(skb, &fib, sizeof(struct iphdr), &s);
	if (why)
		return count(why, TC_ACT_OK);

	__u32 pseudo = 0;
	__u32 *src6 = (__u32 *)&ip6->saddr, *dst6 = (__u32 *)&ip6->daddr;
	for (int i = 0; i < 4; i++) {
		pseudo = csum_replace(pseudo, src6[i], 0);
		pseudo = csum_replace(pseudo, dst6[i], 0);
	}
	pseudo = csum_add(pseudo, k.service);
	pseudo = csum_add(pseudo, k.client);
	__u32 payload = s.tcp_len - s.doff * 4;
	__u16 ident = (__u16)f->packets[1];

	if (skb->len > ETH_HLEN + s.l3_len &&
	    bpf_skb_change_tail(skb, ETH_HLEN + s.l3_len, 0))
		return count(FP_PASS_UNSURE, TC_ACT_OK);
	if (bpf_skb_change_proto(skb, bpf_htons(ETH_P_IP), 0))
		return count(FP_PASS_UNSURE, TC_ACT_OK);

	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	th = data + ETH_HLEN + sizeof(struct iphdr);
	if ((void *)(th + 1) > end || (void *)((__u8 *)th + s.doff * 4) > end)
		return count(FP_FAILED, TC_ACT_SHOT);

	struct diff sum = {};
	__u32 delta = f->delta;
	if (delta && rewrite32(th, end, 4, delta, 1, &sum))
		return count(FP_FAILED, TC_ACT_SHOT);
	if ((f->flags & FP_TIMESTAMPS) && f->ts_offset && s.o.ts_at != NO_OFFSET) {
		if (rewrite32(th, end, s.o.ts_at + 2, f->ts_offset, 1, &sum))
			return count(FP_FAILED, TC_ACT_SHOT);
	}
	if (f->backend_ws != f->client_ws) {
		__u32 bytes = (__u32)bpf_ntohs(th->window) << (f->backend_ws & 0xf);
		__u32 w = bytes >> (f->client_ws & 0xf);
		rewrite_window(th, w > 0xffff ? 0xffff : w, &sum);
	}
	__be16 old_sport = th->source;
	th->source = k.service_port;
	sum.even = csum_replace(sum.even, old_sport, th->source);

	__u32 check_at = ETH_HLEN + sizeof(struct iphdr) + offsetof(struct tcphdr, check);
	if (bpf_l4_csum_replace(skb, check_at, 0, diff_total(&sum), 0) ||
	    bpf_l4_csum_replace(skb, check_at, 0, pseudo, BPF_F_PSEUDO_HDR))
		return count(FP_FAILED, TC_ACT_SHOT);

	struct iphdr ip = {};
	ip.version = 4;
	ip.ihl = 5;
	ip.tos = s.tos;
	ip.tot_len = bpf_htons(s.tcp_len + sizeof(struct iphdr));
	ip.id = bpf_htons(ident);
	/* DF iff the packet is larger than 1260 bytes (RFC 7915 §5.1), as the TUN path. */
	ip.frag_off = s.tcp_len + sizeof(struct iphdr) > 1260 ? bpf_htons(0x4000) : 0;
	ip.ttl = s.ttl - 1;
	ip.protocol = IPPROTO_TCP;
	ip.saddr = k.service;
	ip.daddr = k.client;
	__u32 hsum = 0;
	__u16 *w = (__u16 *)&ip;
	for (int i = 0; i < 10; i++)
		hsum += w[i];
	ip.check = csum_fold(hsum);
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &ip, sizeof(ip), BPF_F_RECOMPUTE_CSUM))
		return count(FP_FAILED, TC_ACT_SHOT);
	__be16 proto = bpf_htons(ETH_P_IP);
	if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_proto), &proto, 2, 0))
		return count(FP_FAILED, TC_ACT_SHOT);

	account(f, 1, payload);
	count(FP_TO_CLIENT, 0);
	return redirect(&fib);
}

SEC("classifier")
int kracauer_fastpath(struct __sk_buff *skb)
{
	/* Frames for this host only, and no VLAN tag left on a parent interface (the program
	 * on the VLAN device sees them untagged). */
	if (skb->pkt_type != 0 /* PACKET_HOST */ || skb->vlan_present)
		return TC_ACT_OK;
	if (skb->protocol == bpf_htons(ETH_P_IP))
		return to_backend(skb);
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return to_client(skb);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "Dual MIT/GPL";
