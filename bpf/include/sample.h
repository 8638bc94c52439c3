/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Filters and packet sampling: what happens to a parsed packet before the
 * flow store is touched.
 *
 * 1. The interface's totals count every IP packet (the `ifaces` map, per
 *    CPU, keyed by ifindex; key 0 is the default for interfaces not in it).
 * 2. Filters (only when filter_rules_n > 0): the first rule that matches
 *    decides. skip: no flow; count: counted, at the rule's rate if it has
 *    one. Hits per rule, and misses, in filter_hits.
 * 3. Sampling 1:N, N from the rule or the interface: random (a fresh random
 *    number per packet), deterministic (every Nth packet, counted per CPU,
 *    so "every Nth" holds per CPU), hash (whole flows: a seeded hash of the
 *    flow's addresses, ports and protocol, the same both ways).
 *
 * Filter rules are matched as bitmaps of rule numbers, one per field: each
 * LPM trie maps a prefix to the rules whose CIDR contains it (the longest
 * match's set holds every rule that contains the address); filter_sets
 * holds the rules per protocol, per direction and those without ports;
 * filter_ports the rules per port (plus those without). The rules a packet
 * matches are the AND of its six sets, the first match the lowest bit: the
 * cost does not grow with the number of rules, only with the words in use.
 */
#ifndef XFLOW_SAMPLE_H
#define XFLOW_SAMPLE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "types.h"
#include "parse.h"

/* Rules loaded (0: no filter code runs at all): a load-time constant. */
const volatile __u32 filter_rules_n = 0;

/* Entries are made by user space only (Attach; Detach deletes them), so
 * nothing is preallocated: a per-CPU value per possible interface would be
 * megabytes on large machines. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct iface_conf);
} ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, FILTER_MAX_RULES + 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, struct rule_set);
} filter_src SEC(".maps"), filter_dst SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FSET_MAX);
	__type(key, __u32);
	__type(value, struct rule_set);
} filter_sets SEC(".maps");

/* Key: side << 16 | port (side 0: source, 1: destination). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * FILTER_MAX_RULES);
	__type(key, __u32);
	__type(value, struct rule_set);
} filter_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FILTER_MAX_RULES);
	__type(key, __u32);
	__type(value, struct filter_rule);
} filter_rules SEC(".maps");

/* Packets per rule that matched first; index FILTER_MAX_RULES: no rule. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FILTER_MAX_RULES + 1);
	__type(key, __u32);
	__type(value, __u64);
} filter_hits SEC(".maps");

static __always_inline struct rule_set *set_at(void *map, __u32 idx)
{
	return bpf_map_lookup_elem(map, &idx);
}

/* Index of the lowest bit set in m (m != 0). */
static __always_inline __u32 lowest_bit(__u64 m)
{
	__u64 b = m & -m;
	__u32 n = 0;

	if (b >> 32) { n += 32; b >>= 32; }
	if (b >> 16) { n += 16; b >>= 16; }
	if (b >> 8) { n += 8; b >>= 8; }
	if (b >> 4) { n += 4; b >>= 4; }
	if (b >> 2) { n += 2; b >>= 2; }
	if (b >> 1) n += 1;
	return n;
}

/* The number of the first rule the packet matches, or -1. */
static __always_inline int filter_match(struct pkt *p)
{
	struct lpm_key k = { .prefixlen = 128 };
	struct rule_set *src, *dst, *proto, *dir, *sp, *dp;
	__u32 i;

	__builtin_memcpy(k.addr, p->key.src, 16);
	src = bpf_map_lookup_elem(&filter_src, &k);
	__builtin_memcpy(k.addr, p->key.dst, 16);
	dst = bpf_map_lookup_elem(&filter_dst, &k);
	proto = set_at(&filter_sets, p->key.proto);
	dir = set_at(&filter_sets, p->key.direction ? FSET_DIR_EGRESS : FSET_DIR_INGRESS);
	sp = set_at(&filter_ports, p->key.src_port);
	if (!sp)
		sp = set_at(&filter_sets, FSET_SPORT_ANY);
	dp = set_at(&filter_ports, 1 << 16 | p->key.dst_port);
	if (!dp)
		dp = set_at(&filter_sets, FSET_DPORT_ANY);
	if (!src || !dst || !proto || !dir || !sp || !dp)
		return -1;
	for (i = 0; i < FILTER_WORDS; i++) {
		if (i * 64 >= filter_rules_n)
			break;
		__u64 m = src->w[i] & dst->w[i] & proto->w[i] & dir->w[i] &
			  sp->w[i] & dp->w[i];
		if (m)
			return i * 64 + lowest_bit(m);
	}
	return -1;
}

static __always_inline __u64 mix64(__u64 h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/* A seeded hash of the flow's addresses, ports (none for ICMP, whose
 * "ports" differ between request and reply) and protocol; the same for
 * both directions, and free of ifindex, VLAN and direction, so hosts that
 * share a seed select the same flows. Mirrored in Go by bpf.FlowHash. */
static __always_inline __u32 flow_hash(const struct flow_key *k, __u32 seed)
{
	const __u64 *s = (const __u64 *)k->src, *d = (const __u64 *)k->dst;
	__u64 sp = k->src_port, dp = k->dst_port;

	if (k->proto == IPPROTO_ICMP || k->proto == IPPROTO_ICMPV6)
		sp = dp = 0;
	__u64 a = mix64(s[0] ^ mix64(s[1] ^ sp));
	__u64 b = mix64(d[0] ^ mix64(d[1] ^ dp));
	return (__u32)mix64(a ^ b ^ ((__u64)seed << 8 | k->proto));
}

/* How many of the packet's segs packets (a GSO batch) are selected at 1:rate
 * (rate > 1). Random and hash select a batch whole or not at all. */
static __always_inline __u32 sample(struct iface_conf *c, __u32 rate,
				    struct pkt *p, __u32 segs)
{
	__u32 mode = c ? c->mode : SAMPLE_RANDOM;

	if (mode == SAMPLE_DETERMINISTIC && c) {
		__u32 n = c->count + segs; /* this CPU's count: no atomics */

		c->count = n % rate;
		return n / rate;
	}
	if (mode == SAMPLE_HASH && c)
		return flow_hash(&p->key, c->seed) % rate == 0 ? segs : 0;
	return bpf_get_prandom_u32() % rate == 0 ? segs : 0;
}

/* Counts the packet in its interface's totals, applies the filters and
 * sampling. Returns 0 to drop it (skipped or not selected), else 1, with
 * *segs and *bytes cut to what was selected and p->sampling set. */
static __always_inline int select_packet(struct pkt *p, __u32 *segs,
					 __u64 *bytes)
{
	__u32 ifindex = p->key.ifindex, dir = p->key.direction & 1, rate = 0;
	struct iface_conf *c = bpf_map_lookup_elem(&ifaces, &ifindex);

	if (!c) {
		ifindex = 0;
		c = bpf_map_lookup_elem(&ifaces, &ifindex);
	}
	if (c) {
		c->packets[dir] += *segs;
		c->bytes[dir] += *bytes;
		rate = c->rate;
	}
	if (filter_rules_n) {
		int r = filter_match(p);
		__u32 hit = r < 0 ? FILTER_MAX_RULES : (__u32)r;
		__u64 *n = bpf_map_lookup_elem(&filter_hits, &hit);

		if (n)
			*n += *segs;
		if (r >= 0) {
			struct filter_rule *fr = bpf_map_lookup_elem(&filter_rules, &hit);

			if (fr && fr->action == FILTER_SKIP)
				return 0;
			if (fr && fr->rate)
				rate = fr->rate;
		}
	}
	p->sampling = 0;
	if (rate > 1) {
		__u32 n = sample(c, rate, p, *segs);

		if (n == 0)
			return 0;
		if (n != *segs) { /* deterministic, inside a GSO batch */
			*bytes = *bytes * n / *segs;
			*segs = n;
		}
		/* The rate (14 bits, as in NetFlow v5's header) and the mode. */
		p->sampling = (rate > 0x3fff ? 0x3fff : rate) |
			      (c ? c->mode : SAMPLE_RANDOM) << 14;
	}
	return 1;
}

#endif
