//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* xflow data plane: count every packet into a per-flow entry.
 *
 * xflow_xdp runs on ingress (XDP), xflow_tc_egress / xflow_tc_ingress on the
 * TC hooks (TCX, or clsact on older kernels). All of them only observe: they
 * always pass the packet on.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "include/types.h"
#include "include/maps.h"
#include "include/parse.h"
#include "include/bench.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader before the program is loaded: the verifier sees them as
 * constants and drops the branches of the kinds not in use. */
const volatile __u32 map_kind = KIND_PERCPU_HASH;
const volatile __u32 array_slots = 1; /* slots in each array store */

/* Benchmarks only (zero in production, so the verifier removes the code):
 * bench_rotate_flows (include/bench.h) makes one repeated test frame that
 * many distinct flows; bench_parse_only stops each packet after its flow key
 * is filled in, before the store: the cost of parsing alone. */
const volatile __u32 bench_parse_only = 0;

#define ARRAY_PROBES 8

/* Make the shared types part of the object's BTF, for bpf2go. */
const struct flow_slot *_flow_slot __attribute__((unused));
const struct flow_event *_flow_event __attribute__((unused));
const enum xflow_counter *_xflow_counter __attribute__((unused));
const enum xflow_map_kind *_xflow_map_kind __attribute__((unused));

static __always_inline void counter_add(__u32 idx, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);

	if (c)
		*c += n; /* per-CPU: no atomics needed */
}

static __always_inline int shared_kind(void)
{
	return map_kind == KIND_HASH || map_kind == KIND_LRU_HASH ||
	       map_kind == KIND_ARRAY;
}

/* Timestamps: a flow's first packet reads the precise monotonic clock; the
 * packets after it read the coarse one (CLOCK_MONOTONIC_COARSE, one tick
 * of resolution: 4 ms at HZ=250), which costs a few ns where the precise
 * clock costs tens of ns in a VM. last_ns only ever moves forward, so it
 * never falls before first_ns. */

/* Adds one packet (or a GSO batch) to an existing entry. Shared maps are
 * written by all CPUs at once, so their counters use atomic adds; per-CPU
 * values are this CPU's alone. */
static __always_inline void value_add(struct flow_value *v, struct pkt *p,
				      __u32 packets, __u64 bytes)
{
	__u64 now = bpf_ktime_get_coarse_ns();

	if (shared_kind()) {
		__sync_fetch_and_add(&v->packets, packets);
		__sync_fetch_and_add(&v->bytes, bytes);
		if ((v->tcp_flags & p->tcp_flags) != p->tcp_flags)
			__sync_fetch_and_or(&v->tcp_flags, p->tcp_flags);
	} else {
		/* A per-CPU hash entry is created by one CPU: the other CPUs'
		 * values start zeroed, and their first packet starts them. */
		if (v->packets == 0) {
			v->first_ns = bpf_ktime_get_ns();
			v->tos = p->tos;
		}
		v->packets += packets;
		v->bytes += bytes;
		v->tcp_flags |= p->tcp_flags;
	}
	if (v->last_ns < now)
		v->last_ns = now;
	if (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
		v->fin_rst = 1;
}

static __always_inline void value_init(struct flow_value *v, struct pkt *p,
				       __u32 packets, __u64 bytes)
{
	__u64 now = bpf_ktime_get_ns();

	v->packets = packets;
	v->bytes = bytes;
	v->first_ns = now;
	v->last_ns = now;
	v->tcp_flags = p->tcp_flags;
	v->tos = p->tos;
	v->fin_rst = (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST)) ? 1 : 0;
	v->pad = 0;
}

static __always_inline int store_hash(struct pkt *p, __u32 packets,
				      __u64 bytes)
{
	__u32 zero = 0;
	void *m = bpf_map_lookup_elem(&flows, &zero);
	struct flow_value *v, nv;

	if (!m)
		return -1;
	v = bpf_map_lookup_elem(m, &p->key);
	if (v) {
		value_add(v, p, packets, bytes);
		return 0;
	}
	value_init(&nv, p, packets, bytes);
	if (bpf_map_update_elem(m, &p->key, &nv, BPF_NOEXIST) == 0) {
		counter_add(CNT_INSERTS, 1);
		return 0;
	}
	/* Another CPU created it first (shared maps), or the map is full. */
	v = bpf_map_lookup_elem(m, &p->key);
	if (!v)
		return -1;
	value_add(v, p, packets, bytes);
	return 0;
}

static __always_inline __u32 key_hash(const struct flow_key *k)
{
	const __u64 *w = (const __u64 *)k;
	__u64 h = 0x9e3779b97f4a7c15ULL;
	int i;

	for (i = 0; i < sizeof(*k) / 8; i++) {
		h ^= w[i];
		h *= 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
	}
	return (__u32)h;
}

static __always_inline int key_equal(const struct flow_key *a,
				     const struct flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
	int i;

	for (i = 0; i < sizeof(*a) / 8; i++)
		if (x[i] != y[i])
			return 0;
	return 1;
}

/* Array kinds: the slot is chosen by a hash of the key and up to
 * ARRAY_PROBES slots are tried in turn. An empty slot is claimed for the
 * key; on the shared array a compare-and-swap decides between CPUs (two CPUs
 * racing for a new flow may each claim a slot: user space sums entries with
 * the same key). */
static __always_inline int store_array(struct pkt *p, __u32 packets,
				       __u64 bytes)
{
	__u32 zero = 0;
	void *m = bpf_map_lookup_elem(&slots, &zero);
	__u32 n = array_slots, idx;
	int i;

	if (!m || n == 0)
		return -1;
	idx = key_hash(&p->key) % n;
	for (i = 0; i < ARRAY_PROBES; i++, idx = idx + 1 < n ? idx + 1 : 0) {
		struct flow_slot *s = bpf_map_lookup_elem(m, &idx);
		__u32 state;

		if (!s)
			return -1;
		state = *(volatile __u32 *)&s->state;
		if (state == SLOT_READY) {
			if (key_equal(&s->key, &p->key)) {
				value_add(&s->val, p, packets, bytes);
				return 0;
			}
			continue;
		}
		if (state != SLOT_EMPTY)
			continue; /* another CPU is filling it in */
		if (shared_kind()) {
			if (__sync_val_compare_and_swap(&s->state, SLOT_EMPTY,
							SLOT_CLAIMED) != SLOT_EMPTY)
				continue;
		}
		s->key = p->key;
		value_init(&s->val, p, packets, bytes);
		if (shared_kind())
			__sync_lock_test_and_set(&s->state, SLOT_READY);
		else
			s->state = SLOT_READY;
		counter_add(CNT_INSERTS, 1);
		return 0;
	}
	return -1;
}

/* Ring-buffer kind: one record per packet; user space aggregates. The
 * consumer is woken only once the ring is an eighth full, and otherwise
 * polls: a wakeup per packet would cost more than the record. */
static __always_inline int store_ring(struct pkt *p, __u32 packets,
				      __u64 bytes)
{
	struct flow_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		return -1;
	e->key = p->key;
	e->ts_ns = bpf_ktime_get_ns(); /* any event may start a flow */
	e->bytes = bytes;
	e->packets = packets;
	e->tcp_flags = p->tcp_flags;
	e->tos = p->tos;
	e->pad[0] = e->pad[1] = e->pad[2] = 0;
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	__u64 size = bpf_ringbuf_query(&events, BPF_RB_RING_SIZE);
	bpf_ringbuf_submit(e, avail > size / 8 ? BPF_RB_FORCE_WAKEUP :
						 BPF_RB_NO_WAKEUP);
	return 0;
}

/* Parses the frame and counts it. segs > 1 is a GSO super-packet that will
 * leave as segs packets, each with its own copy of the headers. */
static __always_inline void handle(void *data, void *data_end, __u32 frame_len,
				   __u32 ifindex, __u8 dir, int hw_vlan,
				   __u32 segs)
{
	struct pkt p = {};
	__u64 bytes;
	int ret;

	ret = parse(&p, data, data_end, frame_len, hw_vlan, segs > 1);
	if (ret != PARSE_FLOW) {
		counter_add(ret == PARSE_NON_IP	   ? CNT_NON_IP :
			    ret == PARSE_TRUNCATED ? CNT_TRUNCATED :
						     CNT_MALFORMED,
			    1);
		return;
	}
	if (p.l4_trunc)
		counter_add(CNT_L4_TRUNCATED, 1);
	if (p.frag)
		counter_add(CNT_FRAGMENTS, 1);
	if (p.ext_limit)
		counter_add(CNT_IPV6_EXT_LIMIT, 1);

	p.key.ifindex = ifindex;
	p.key.direction = dir;
	if (bench_rotate_flows)
		*(__u32 *)&p.key.src[12] ^= bench_rotation();

	bytes = p.ip_len;
	if (segs > 1)
		bytes = (__u64)(frame_len - p.l3_off) + (__u64)(segs - 1) * p.hdrs_len;
	else
		segs = 1;

	if (bench_parse_only) {
		/* Make the key and the byte count real before leaving. */
		asm volatile("" : : "r"(&p), "r"(bytes), "r"(segs) : "memory");
		return;
	}
	if (map_kind == KIND_RINGBUF)
		ret = store_ring(&p, segs, bytes);
	else if (map_kind == KIND_ARRAY || map_kind == KIND_PERCPU_ARRAY)
		ret = store_array(&p, segs, bytes);
	else
		ret = store_hash(&p, segs, bytes);
	if (ret) {
		counter_add(CNT_MISSED_PACKETS, segs);
		counter_add(CNT_MISSED_BYTES, bytes);
	}
}

SEC("xdp.frags")
int xflow_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	handle(data, data_end, bpf_xdp_get_buff_len(ctx), ctx->ingress_ifindex,
	       DIR_INGRESS, -1, 1);
	return XDP_PASS;
}

static __always_inline int handle_skb(struct __sk_buff *skb, __u8 dir)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	/* Headers normally sit in the linear part; pull them in if not. */
	if (data + 128 > data_end && skb->len > data_end - data) {
		bpf_skb_pull_data(skb, skb->len < 128 ? skb->len : 128);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}
	handle(data, data_end, skb->len, skb->ifindex, dir,
	       skb->vlan_present ? (int)(skb->vlan_tci & 0x0fff) : -1,
	       skb->gso_segs);
	return TC_ACT_UNSPEC; /* TCX_NEXT: let the next program decide */
}

SEC("tc")
int xflow_tc_egress(struct __sk_buff *skb)
{
	return handle_skb(skb, DIR_EGRESS);
}

SEC("tc")
int xflow_tc_ingress(struct __sk_buff *skb)
{
	return handle_skb(skb, DIR_INGRESS);
}
