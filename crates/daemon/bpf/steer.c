// SPDX-License-Identifier: MIT OR Apache-2.0
//
// The TUN steering program: which queue of the multi-queue TUN device (and so which
// worker) gets each packet the kernel hands the device. Both directions of a flow and
// the ICMP errors about it must reach the worker that owns the flow, so the program
// finds the flow's client (IPv4 address and port) in every kind of packet and returns
// a keyed 16-bit hash of it; the kernel takes that modulo the number of queues.
//
// This is kracauer_core::steer::steer_value, case for case: the daemon's tests run this
// program under BPF_PROG_TEST_RUN and require the reference's value on every sample,
// well-formed or not. Every read goes through bpf_skb_load_bytes, and a read that
// falls outside the packet makes the program return 0, as the reference does when a
// byte it needs is missing.
//
// IPv6 packets have their extension headers walked (Hop-by-Hop, Routing, Fragment,
// Destination Options, Authentication Header; at most MAX_EXT_HEADERS of them, in any
// order), so a backend's segment behind them reaches its flow's worker. A non-first
// fragment carries no ports: it steers by the address alone.
//
// Loaded as a socket filter (the program type TUNSETSTEERINGEBPF takes) by
// crates/daemon/src/steer.rs, which sets the key (steer_k0, steer_k1) at load time.
// Built by build.sh; the object beside this file is committed.

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// The key, drawn at random by the daemon at each start and written into the program's
// read-only data before it is loaded (kracauer_core::steer::SteerKey).
volatile const __u32 steer_k0 = 0;
volatile const __u32 steer_k1 = 0;

// kracauer_core::steer::mix.
#define MUL_ADDR 0x9e3779b1u
#define MUL_PORT 0x85ebca6bu
#define MUL_FINAL 0xc2b2ae35u
#define SHIFT_ADDR 16
#define SHIFT_PORT 13
#define SHIFT_FINAL 16
#define OUT_MASK 0xffffu

// Offsets from the start of the IP header (kracauer_core::steer::offset).
#define V4_FLAGS_FRAG 6
#define V4_PROTOCOL 9
#define V4_SRC 12
#define V4_DST 16
#define V4_FRAGMENT_MASK 0x3fff
#define V6_NEXT_HEADER 6
#define V6_SRC_LOW32 20
#define V6_DST_LOW32 36
#define V6_HEADER_LEN 40
#define ICMP_QUOTE 8
#define SRC_PORT 0
#define DST_PORT 2

// The bits of a Fragment header's offset field (its low 16 bits, read as the last two of
// the header's first four bytes) that make it a non-first fragment.
#define V6_FRAGMENT_OFFSET_MASK 0xfff8
// ICMPv6 types below this are errors (RFC 4443 §2.1).
#define ICMPV6_INFO_FIRST 128
// The most IPv6 extension headers walked (kracauer_core::wire::ipv6::MAX_EXT_HEADERS).
#define MAX_EXT_HEADERS 8

// The client of a packet: the flow's IPv4 address and port (port 0 when it has none).
struct client {
	__u32 addr;
	__u32 port;
};

// Each reader stores the field in host order and returns 0, or returns -1 when the
// field is not wholly inside the packet.
static __always_inline int u8_at(struct __sk_buff *skb, __u32 at, __u32 *out)
{
	__u8 v;

	if (bpf_skb_load_bytes(skb, at, &v, sizeof(v)) < 0)
		return -1;
	*out = v;
	return 0;
}

static __always_inline int u16_at(struct __sk_buff *skb, __u32 at, __u32 *out)
{
	__u16 v;

	if (bpf_skb_load_bytes(skb, at, &v, sizeof(v)) < 0)
		return -1;
	*out = bpf_ntohs(v);
	return 0;
}

static __always_inline int u32_at(struct __sk_buff *skb, __u32 at, __u32 *out)
{
	__u32 v;

	if (bpf_skb_load_bytes(skb, at, &v, sizeof(v)) < 0)
		return -1;
	*out = bpf_ntohl(v);
	return 0;
}

// The ICMPv4 errors the engine maps back to a flow: destination unreachable, source
// quench, redirect, time exceeded, parameter problem.
static __always_inline int icmpv4_is_error(__u32 type)
{
	return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

// IPv4: TCP or UDP from the client (source address and port); an ICMP error about a
// packet sent to the client (the quoted destination and destination port, after the
// quoted header's own options); anything else, fragments included, the source with
// port 0.
static __always_inline int client_v4(struct __sk_buff *skb, __u32 first, struct client *c)
{
	__u32 transport = (first & 0x0f) * 4;
	__u32 protocol, frag, type, quoted_first;

	if (u8_at(skb, V4_PROTOCOL, &protocol) || u32_at(skb, V4_SRC, &c->addr) ||
	    u16_at(skb, V4_FLAGS_FRAG, &frag))
		return -1;
	c->port = 0;
	if (frag & V4_FRAGMENT_MASK)
		return 0;
	if (protocol == IPPROTO_TCP || protocol == IPPROTO_UDP)
		return u16_at(skb, transport + SRC_PORT, &c->port);
	if (protocol != IPPROTO_ICMP)
		return 0;
	if (u8_at(skb, transport, &type))
		return -1;
	if (!icmpv4_is_error(type))
		return 0;
	__u32 quote = transport + ICMP_QUOTE;
	if (u8_at(skb, quote, &quoted_first) || u32_at(skb, quote + V4_DST, &c->addr))
		return -1;
	return u16_at(skb, quote + (quoted_first & 0x0f) * 4 + DST_PORT, &c->port);
}

// Where the IPv6 upper layer is: its protocol and offset.
struct upper {
	__u32 protocol;
	__u32 offset;
};

// The protocol of what follows a non-first fragment's header: no header at all (not a
// protocol number, which fits 8 bits).
#define NON_FIRST_FRAGMENT 0x100

// Whether the walk goes over `protocol`: Hop-by-Hop, Routing, Destination Options,
// Fragment, Authentication.
static __always_inline int is_walked(__u32 protocol)
{
	return protocol == IPPROTO_HOPOPTS || protocol == IPPROTO_ROUTING ||
	       protocol == IPPROTO_DSTOPTS || protocol == IPPROTO_FRAGMENT ||
	       protocol == IPPROTO_AH;
}

// Walks at most MAX_EXT_HEADERS extension headers from the fixed header's next header.
// Every one is at least 8 bytes and starts with Next Header and a length byte (a
// reserved byte in a Fragment header), then (Fragment) the offset field: the walk reads
// those 4 bytes of each. Hop-by-Hop, Routing and Destination Options give their length
// in 8-byte units not counting the first 8, the Authentication Header in 4-byte units
// minus 2 (RFC 4302); a Fragment header is 8 bytes, and one with a non-zero offset has
// no ports after it. After the last walk the protocol may still be an extension
// header: the caller treats it as any other protocol without ports. One read and few
// branches per header keep the verifier's work small.
static __always_inline int walk_v6(struct __sk_buff *skb, struct upper *u)
{
	__u32 head, len;

	if (u8_at(skb, V6_NEXT_HEADER, &u->protocol))
		return -1;
	u->offset = V6_HEADER_LEN;
	// Unrolled: with a loop left in, a verifier that simulates speculative execution (a
	// loader with CAP_BPF but not CAP_PERFMON, as the systemd unit runs) follows the
	// back edge past the bound, iteration after iteration, until it gives up.
#pragma unroll
	for (int i = 0; i < MAX_EXT_HEADERS; i++) {
		if (!is_walked(u->protocol))
			return 0;
		if (u32_at(skb, u->offset, &head))
			return -1;
		if (u->protocol == IPPROTO_FRAGMENT) {
			if (head & V6_FRAGMENT_OFFSET_MASK) {
				u->protocol = NON_FIRST_FRAGMENT;
				return 0;
			}
			len = 8;
		} else if (u->protocol == IPPROTO_AH) {
			len = (((head >> 16) & 0xff) + 2) * 4;
		} else {
			len = (((head >> 16) & 0xff) + 1) * 8;
		}
		u->protocol = head >> 24;
		u->offset += len;
	}
	return 0;
}

// IPv6: TCP or UDP from a backend (the low 32 bits of the destination, the embedded
// client, and the destination port); an ICMPv6 error about a packet sent to a backend
// (the quoted source's low 32 bits and source port); anything else the destination's
// low 32 bits with port 0.
static __always_inline int client_v6(struct __sk_buff *skb, struct client *c)
{
	struct upper u;
	__u32 type;

	if (u32_at(skb, V6_DST_LOW32, &c->addr) || walk_v6(skb, &u))
		return -1;
	c->port = 0;
	if (u.protocol == IPPROTO_TCP || u.protocol == IPPROTO_UDP)
		return u16_at(skb, u.offset + DST_PORT, &c->port);
	if (u.protocol != IPPROTO_ICMPV6)
		return 0;
	if (u8_at(skb, u.offset, &type))
		return -1;
	if (type >= ICMPV6_INFO_FIRST)
		return 0;
	__u32 quote = u.offset + ICMP_QUOTE;
	if (u32_at(skb, quote + V6_SRC_LOW32, &c->addr))
		return -1;
	return u16_at(skb, quote + V6_HEADER_LEN + SRC_PORT, &c->port);
}

// kracauer_core::steer::queue_hash.
static __always_inline __u32 queue_hash(__u32 addr, __u32 port)
{
	__u32 h = addr ^ steer_k0;

	h *= MUL_ADDR;
	h ^= h >> SHIFT_ADDR;
	h ^= port ^ steer_k1;
	h *= MUL_PORT;
	h ^= h >> SHIFT_PORT;
	h *= MUL_FINAL;
	h ^= h >> SHIFT_FINAL;
	return h & OUT_MASK;
}

SEC("socket")
int kracauer_steer(struct __sk_buff *skb)
{
	struct client c;
	__u32 first;
	int missing;

	if (u8_at(skb, 0, &first))
		return 0;
	switch (first >> 4) {
	case 4:
		missing = client_v4(skb, first, &c);
		break;
	case 6:
		missing = client_v6(skb, &c);
		break;
	default:
		return 0;
	}
	if (missing)
		return 0;
	return queue_hash(c.addr, c.port);
}

char LICENSE[] SEC("license") = "MIT OR Apache-2.0";
