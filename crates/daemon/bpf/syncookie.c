// SPDX-License-Identifier: MIT OR Apache-2.0 OR GPL-2.0-only
/* SYN floods answered in the kernel (docs/architecture.md, "SYN cookies in the kernel"): a
 * tc ingress program attached ahead of the fast path (bpf/fastpath.c) at the same
 * interfaces.
 *
 * It recognises a TCP segment to a service port by routing it as the kernel would
 * (bpf_fib_lookup from the interface it came in on, ports included, so the policy rules
 * that divert service ports apply): a route into the TUN device is a service port.
 *
 * Flood mode off (the daemon's choice, kr_sc_config.flood): every packet goes on
 * untouched; a SYN to a service port is counted and its connection remembered
 * (kr_sc_flows), so that its later segments pass once flood mode is on.
 *
 * Flood mode on:
 * - a SYN to a service port is answered here with the SYN-ACK the TUN path would send
 *   for a cookie (kracauer_core Engine::send_cookie): seq = Kracauer's own SYN cookie
 *   (tcp::isn: 5-bit tick, 2-bit MSS index, 25 bits of SipHash-2-4 keyed with the epoch
 *   key of the tick, derived from the root the engines share), MSS = the IPv6 MTU − 60,
 *   and with timestamps the client's window scale and SACK-permitted in the low 5 bits
 *   of the TSval (the SYN-ACK then offers window scaling and SACK as the client did);
 *   without timestamps neither. The SYN's skb is turned into the SYN-ACK in place and
 *   sent where the kernel routes it from the TUN device;
 * - a segment of a connection the program knows (kr_sc_flows) goes on;
 * - an ACK whose cookie checks (ack − 1 against seq − 1, this tick or the one before)
 *   goes on to the TUN path, where the engine checks it again and makes the flow from
 *   the cookie's MSS and the options in its TSecr; its connection is remembered;
 * - any other segment without SYN or RST to a service port is dropped and counted;
 * - a SYN whose answer has no way out (into the TUN, no route, a blackhole, a local
 *   address) is dropped and counted: the TUN path's answer would be lost too.
 *
 * Anything it is not sure of goes on untouched (TC_ACT_UNSPEC: the next program, the
 * fast path, then the stack): IPv4 options or fragments, SYN with ACK, FIN or RST, SYN
 * with data, options that do not parse, a route back the program cannot use. */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "syncookie.h"

#ifndef AF_INET
#define AF_INET 2
#endif

#define TCPOPT_EOL 0
#define TCPOPT_NOP 1
#define TCPOPT_MSS 2
#define TCPOPT_WINDOW 3
#define TCPOPT_SACK_PERM 4
#define TCPOPT_TIMESTAMP 8
#define MAX_OPTIONS 40
#define NO_WSCALE 0xf
#define TICK_NS 64000000000ULL
#define EPOCH_TICKS_LOG2 4
#define HASH_BITS 25
#define HASH_MASK ((1U << HASH_BITS) - 1)
#define HOP_LIMIT 64

/* Set by the loader: the TUN device's index (where service ports are routed). */
volatile const __u32 tun_ifindex = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct sc_config);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kr_sc_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sc_key);
	__type(value, __u64);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kr_sc_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, SC_STATS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kr_sc_stats SEC(".maps");

static __always_inline int count(enum sc_stat what, int verdict)
{
	__u32 key = what;
	__u64 *n = bpf_map_lookup_elem(&kr_sc_stats, &key);

	if (n)
		*n += 1;
	return verdict;
}

/* SipHash-2-4 (the siphasher crate's SipHasher24, which the engine uses). */
#define ROTL(x, b) (__u64)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                           \
	do {                                                                               \
		v0 += v1;                                                                  \
		v1 = ROTL(v1, 13);                                                         \
		v1 ^= v0;                                                                  \
		v0 = ROTL(v0, 32);                                                         \
		v2 += v3;                                                                  \
		v3 = ROTL(v3, 16);                                                         \
		v3 ^= v2;                                                                  \
		v0 += v3;                                                                  \
		v3 = ROTL(v3, 21);                                                         \
		v3 ^= v0;                                                                  \
		v2 += v1;                                                                  \
		v1 = ROTL(v1, 17);                                                         \
		v1 ^= v2;                                                                  \
		v2 = ROTL(v2, 32);                                                         \
	} while (0)

struct sip {
	__u64 v0, v1, v2, v3;
};

static __always_inline void sip_init(struct sip *s, __u64 k0, __u64 k1)
{
	s->v0 = k0 ^ 0x736f6d6570736575ULL;
	s->v1 = k1 ^ 0x646f72616e646f6dULL;
	s->v2 = k0 ^ 0x6c7967656e657261ULL;
	s->v3 = k1 ^ 0x7465646279746573ULL;
}

static __always_inline void sip_block(struct sip *s, __u64 m)
{
	__u64 v0 = s->v0, v1 = s->v1, v2 = s->v2, v3 = s->v3;

	v3 ^= m;
	SIPROUND;
	SIPROUND;
	v0 ^= m;
	s->v0 = v0;
	s->v1 = v1;
	s->v2 = v2;
	s->v3 = v3;
}

static __always_inline __u64 sip_finish(struct sip *s)
{
	__u64 v0 = s->v0, v1 = s->v1, v2 = s->v2, v3 = s->v3;

	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* One half of the epoch key: SipHash(root; epoch LE, n LE). */
static __noinline __u64 epoch_key_half(__u64 r0, __u64 r1, __u64 epoch, __u64 n)
{
	struct sip s;

	sip_init(&s, r0, r1);
	sip_block(&s, epoch);
	sip_block(&s, n);
	sip_block(&s, 16ULL << 56);
	return sip_finish(&s);
}

/* The cookie's 25 hash bits (IsnSource::cookie_hash): SipHash over client address,
 * client port (LE), service address, service port (LE), client ISN (LE), tick (LE u64)
 * and MSS index (LE u32): 28 bytes. */
static __noinline __u32 cookie_hash(struct sc_config *cfg, struct sc_key *k, __u32 isn,
				    __u64 tick, __u32 idx)
{
	__u64 epoch = tick >> EPOCH_TICKS_LOG2;
	__u64 k0 = epoch_key_half(cfg->root[0], cfg->root[1], epoch, 0);
	__u64 k1 = epoch_key_half(cfg->root[0], cfg->root[1], epoch, 1);
	__u16 cport = bpf_ntohs(k->client_port), sport = bpf_ntohs(k->service_port);
	/* Addresses in network order are their octets in memory: a little-endian load of
	 * the 28 bytes gives these words. */
	__u64 w0 = (__u64)k->client | ((__u64)cport << 32) | ((__u64)(k->service & 0xffff) << 48);
	__u64 w1 = (__u64)(k->service >> 16) | ((__u64)sport << 16) | ((__u64)isn << 32);
	struct sip s;

	sip_init(&s, k0, k1);
	sip_block(&s, w0);
	sip_block(&s, w1);
	sip_block(&s, tick);
	sip_block(&s, (28ULL << 56) | idx);
	return (__u32)sip_finish(&s) & HASH_MASK;
}

static __always_inline __u32 mss_index(__u16 mss)
{
	if (mss >= 1460)
		return 3;
	if (mss >= 1440)
		return 2;
	if (mss >= 1220)
		return 1;
	return 0;
}

/* The SYN's options, as kracauer_core's SegInfo::parse reads them (a later option of a
 * kind wins, a known kind of the wrong length is skipped). */
struct syn_opts {
	__u8 buf[64];
	__u32 len;
	__u32 pos;
	int error;
	__u16 mss;
	__u8 has_mss;
	__u8 wscale;
	__u8 has_wscale;
	__u8 sack;
	__u8 has_ts;
	__u32 tsval;
};

static long opt_step(__u32 i, struct syn_opts *o)
{
	__u32 pos = o->pos;

	if (pos >= o->len || pos >= MAX_OPTIONS)
		return 1;
	__u8 kind = o->buf[pos & 63];
	if (kind == TCPOPT_EOL)
		return 1;
	if (kind == TCPOPT_NOP) {
		o->pos = pos + 1;
		return 0;
	}
	if (pos + 1 >= o->len) {
		o->error = 1;
		return 1;
	}
	__u8 olen = o->buf[(pos + 1) & 63];
	if (olen < 2 || pos + olen > o->len) {
		o->error = 1;
		return 1;
	}
	__u32 d = (pos + 2) & 63;
	if (kind == TCPOPT_MSS && olen == 4) {
		o->mss = ((__u16)o->buf[d] << 8) | o->buf[(d + 1) & 63];
		o->has_mss = 1;
	} else if (kind == TCPOPT_WINDOW && olen == 3) {
		__u8 ws = o->buf[d];
		o->wscale = ws > 14 ? 14 : ws;
		o->has_wscale = 1;
	} else if (kind == TCPOPT_SACK_PERM && olen == 2) {
		o->sack = 1;
	} else if (kind == TCPOPT_TIMESTAMP && olen == 10) {
		o->tsval = ((__u32)o->buf[d] << 24) | ((__u32)o->buf[(d + 1) & 63] << 16) |
			   ((__u32)o->buf[(d + 2) & 63] << 8) | o->buf[(d + 3) & 63];
		o->has_ts = 1;
	}
	o->pos = pos + olen;
	return 0;
}

/* Whether the kernel routes this segment into the TUN device: a service port. */
static __always_inline int to_service(struct __sk_buff *skb, struct iphdr *ip, struct tcphdr *th)
{
	struct bpf_fib_lookup fib = {};

	fib.family = AF_INET;
	fib.l4_protocol = IPPROTO_TCP;
	fib.sport = th->source;
	fib.dport = th->dest;
	fib.tos = ip->tos;
	fib.tot_len = bpf_ntohs(ip->tot_len);
	fib.ipv4_src = ip->saddr;
	fib.ipv4_dst = ip->daddr;
	fib.ifindex = skb->ifindex;
	long rc = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_SKIP_NEIGH);
	return (rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) &&
	       fib.ifindex == tun_ifindex;
}

/* The SYN-ACK's TCP header and options, as kracauer_core's emit writes them. */
struct synack {
	struct tcphdr th;
	__u8 opts[20];
};

/* Answers the SYN in `skb` (IPv4 header at ETH_HLEN, 20 bytes; TCP header `doff` words,
 * no payload) with a cookie SYN-ACK. */
static __always_inline int answer(struct __sk_buff *skb, struct sc_config *cfg, __u32 doff)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	struct tcphdr *th = (void *)(ip + 1);

	if ((void *)(th + 1) > end)
		return count(SC_PASS_UNSURE, TC_ACT_UNSPEC);
	struct sc_key k = {
		.client = ip->saddr,
		.service = ip->daddr,
		.client_port = th->source,
		.service_port = th->dest,
	};
	__u32 c_isn = bpf_ntohl(th->seq);
	__u32 in_len = doff * 4;

	if (in_len < sizeof(struct tcphdr) || in_len > 60)
		return count(SC_PASS_UNSURE, TC_ACT_UNSPEC);

	/* The options, walked into `o`. */
	struct syn_opts o = {};
	o.len = (in_len - sizeof(struct tcphdr)) & 0x3f;
	if (o.len > MAX_OPTIONS)
		return count(SC_PASS_UNSURE, TC_ACT_UNSPEC);
	if (o.len > 0 && bpf_skb_load_bytes(skb, ETH_HLEN + sizeof(*ip) + sizeof(struct tcphdr),
					    o.buf, o.len))
		return count(SC_PASS_UNSURE, TC_ACT_UNSPEC);
	bpf_loop(MAX_OPTIONS, opt_step, &o, 0);
	if (o.error)
		return count(SC_PASS_UNSURE, TC_ACT_UNSPEC);

	/* The cookie (IsnSource::cookie) and the TSval (cookie_tsval). */
	__u64 now = bpf_ktime_get_ns();
	__u64 tick = now / TICK_NS;
	__u32 idx = mss_index(o.has_mss ? o.mss : 536);
	__u32 cookie = (((__u32)tick & 0x1f) << 27) | (idx << HASH_BITS) |
		       cookie_hash(cfg, &k, c_isn, tick, idx);
	__u32 ws_bits = o.has_wscale ? o.wscale : NO_WSCALE;
	__u32 tsval = ((__u32)(now / 1000000) & ~0x1fU) | ((__u32)o.sack << 4) | ws_bits;

	/* The route back, as from the TUN device; nothing is changed before it is known. */
	struct synack s = {};
	__u32 olen = 4;
	s.opts[0] = TCPOPT_MSS;
	s.opts[1] = 4;
	s.opts[2] = cfg->mss >> 8;
	s.opts[3] = cfg->mss & 0xff;
	if (o.has_ts) {
		if (o.sack) {
			s.opts[4] = TCPOPT_SACK_PERM;
			s.opts[5] = 2;
		} else {
			s.opts[4] = TCPOPT_NOP;
			s.opts[5] = TCPOPT_NOP;
		}
		s.opts[6] = TCPOPT_TIMESTAMP;
		s.opts[7] = 10;
		__be32 tv = bpf_htonl(tsval), te = bpf_htonl(o.tsval);
		__builtin_memcpy(&s.opts[8], &tv, 4);
		__builtin_memcpy(&s.opts[12], &te, 4);
		olen = 16;
		if (o.has_wscale) {
			s.opts[16] = TCPOPT_NOP;
			s.opts[17] = TCPOPT_WINDOW;
			s.opts[18] = 3;
			s.opts[19] = cfg->wscale;
			olen = 20;
		}
	}
	__u32 out_len = sizeof(struct tcphdr) + olen;
	__u32 ip_len = sizeof(struct iphdr) + out_len;

	struct bpf_fib_lookup fib = {};
	fib.family = AF_INET;
	fib.l4_protocol = IPPROTO_TCP;
	fib.sport = k.service_port;
	fib.dport = k.client_port;
	fib.tot_len = ip_len;
	fib.ipv4_src = k.service;
	fib.ipv4_dst = k.client;
	fib.ifindex = tun_ifindex;
	long rc = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_SKIP_NEIGH);
	if ((rc == BPF_FIB_LKUP_RET_SUCCESS && fib.ifindex == tun_ifindex) ||
	    rc == BPF_FIB_LKUP_RET_BLACKHOLE || rc == BPF_FIB_LKUP_RET_UNREACHABLE ||
	    rc == BPF_FIB_LKUP_RET_PROHIBIT || rc == BPF_FIB_LKUP_RET_NOT_FWDED)
		return count(SC_NO_ROUTE, TC_ACT_SHOT);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return count(SC_PASS_ROUTE, TC_ACT_UNSPEC);

	s.th.source = k.service_port;
	s.th.dest = k.client_port;
	s.th.seq = bpf_htonl(cookie);
	s.th.ack_seq = bpf_htonl(c_isn + 1);
	s.th.doff = out_len / 4;
	s.th.syn = 1;
	s.th.ack = 1;
	s.th.window = bpf_htons(65535);
	/* The checksum goes on from the SYN's (incrementally, whatever form the skb has
	 * it in): the header and options' difference, then the pseudo-header's length. */
	s.th.check = th->check;

	__u8 old[60] = {};
	if (bpf_skb_load_bytes(skb, ETH_HLEN + sizeof(*ip), old, in_len))
		return count(SC_PASS_UNSURE, TC_ACT_UNSPEC);
	old[16] = 0;
	old[17] = 0;
	__u16 check = s.th.check;
	s.th.check = 0;
	__s64 diff = bpf_csum_diff((__be32 *)old, in_len, (__be32 *)&s, out_len, 0);
	s.th.check = check;
	if (diff < 0)
		return count(SC_PASS_UNSURE, TC_ACT_UNSPEC);

	struct iphdr nip = {};
	nip.version = 4;
	nip.ihl = 5;
	nip.tot_len = bpf_htons(ip_len);
	nip.id = (__u16)bpf_get_prandom_u32();
	nip.frag_off = bpf_htons(0x4000);
	nip.ttl = HOP_LIMIT;
	nip.protocol = IPPROTO_TCP;
	nip.saddr = k.service;
	nip.daddr = k.client;
	__u32 hsum = 0;
	__u16 *w = (__u16 *)&nip;
	for (int i = 0; i < 10; i++)
		hsum += w[i];
	hsum = (hsum & 0xffff) + (hsum >> 16);
	hsum = (hsum & 0xffff) + (hsum >> 16);
	nip.check = (__u16)~hsum;

	/* From here the packet is changed: a failure drops it. */
	if (bpf_skb_change_tail(skb, ETH_HLEN + ip_len, 0))
		return count(SC_FAILED, TC_ACT_SHOT);
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &nip, sizeof(nip), BPF_F_RECOMPUTE_CSUM))
		return count(SC_FAILED, TC_ACT_SHOT);
	if (bpf_skb_store_bytes(skb, ETH_HLEN + sizeof(nip), &s, out_len,
				BPF_F_RECOMPUTE_CSUM))
		return count(SC_FAILED, TC_ACT_SHOT);
	__u32 check_at = ETH_HLEN + sizeof(nip) + offsetof(struct tcphdr, check);
	if (bpf_l4_csum_replace(skb, check_at, 0, diff, 0) ||
	    bpf_l4_csum_replace(skb, check_at, bpf_htons(in_len), bpf_htons(out_len),
				BPF_F_PSEUDO_HDR | 2))
		return count(SC_FAILED, TC_ACT_SHOT);

	count(SC_SYN_ANSWERED, 0);
	struct bpf_redir_neigh nh = {};
	nh.nh_family = AF_INET;
	nh.ipv4_nh = fib.ipv4_dst;
	return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
}

/* Whether an ACK carries a valid cookie (IsnSource::check_cookie): ack − 1 against
 * seq − 1, made this tick or the one before. */
static __always_inline int cookie_ok(struct sc_config *cfg, struct sc_key *k, __u32 seq,
				     __u32 ack)
{
	__u32 cookie = ack - 1, isn = seq - 1;
	__u32 idx = (cookie >> HASH_BITS) & 3;
	__u32 tick5 = cookie >> 27;
	__u64 now_tick = bpf_ktime_get_ns() / TICK_NS;

	if ((now_tick & 0x1f) == tick5 &&
	    cookie_hash(cfg, k, isn, now_tick, idx) == (cookie & HASH_MASK))
		return 1;
	if (now_tick > 0 && ((now_tick - 1) & 0x1f) == tick5 &&
	    cookie_hash(cfg, k, isn, now_tick - 1, idx) == (cookie & HASH_MASK))
		return 1;
	return 0;
}

SEC("classifier")
int kracauer_syncookie(struct __sk_buff *skb)
{
	if (skb->pkt_type != 0 /* PACKET_HOST */ || skb->vlan_present ||
	    skb->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_UNSPEC;
	__u32 zero = 0;
	struct sc_config *cfg = bpf_map_lookup_elem(&kr_sc_config, &zero);
	if (!cfg || cfg->mss == 0)
		return TC_ACT_UNSPEC;

	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > end)
		return TC_ACT_UNSPEC;
	if (ip->version != 4 || ip->ihl != 5 || ip->protocol != IPPROTO_TCP ||
	    ip->frag_off & bpf_htons(0x3fff))
		return TC_ACT_UNSPEC;
	struct tcphdr *th = (void *)(ip + 1);
	if ((void *)(th + 1) > end)
		return TC_ACT_UNSPEC;
	__u32 l3_len = bpf_ntohs(ip->tot_len);
	__u32 doff = th->doff;
	if (doff < 5 || l3_len < sizeof(*ip) + doff * 4 || ETH_HLEN + l3_len > skb->len)
		return TC_ACT_UNSPEC;
	int flood = cfg->flood;

	if (th->syn) {
		if (th->ack || th->fin || th->rst || !to_service(skb, ip, th))
			return TC_ACT_UNSPEC;
		count(SC_SYN_SEEN, 0);
		struct sc_key k = {
			.client = ip->saddr,
			.service = ip->daddr,
			.client_port = th->source,
			.service_port = th->dest,
		};
		if (!flood) {
			__u64 t = bpf_ktime_get_ns();
			bpf_map_update_elem(&kr_sc_flows, &k, &t, BPF_ANY);
			return count(SC_SYN_PASSED, TC_ACT_UNSPEC);
		}
		if (l3_len != sizeof(*ip) + doff * 4)
			return count(SC_PASS_UNSURE, TC_ACT_UNSPEC);
		return answer(skb, cfg, doff);
	}
	if (!flood || th->rst)
		return TC_ACT_UNSPEC;
	struct sc_key k = {
		.client = ip->saddr,
		.service = ip->daddr,
		.client_port = th->source,
		.service_port = th->dest,
	};
	if (bpf_map_lookup_elem(&kr_sc_flows, &k))
		return TC_ACT_UNSPEC;
	if (!to_service(skb, ip, th))
		return TC_ACT_UNSPEC;
	if (th->ack && cookie_ok(cfg, &k, bpf_ntohl(th->seq), bpf_ntohl(th->ack_seq))) {
		__u64 t = bpf_ktime_get_ns();
		bpf_map_update_elem(&kr_sc_flows, &k, &t, BPF_ANY);
		return count(SC_COOKIE_VALID, TC_ACT_UNSPEC);
	}
	return count(SC_COOKIE_INVALID, TC_ACT_SHOT);
}

char _license[] SEC("license") = "Dual MIT/GPL";
