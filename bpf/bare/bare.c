//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Benchmarks only: the bare map update of each store kind, the yardstick the
 * production programs (xflow.c) are measured against.
 *
 * bare_xdp and bare_tc ignore the packet. Each builds one fixed 48-byte
 * struct flow_key, rotates it exactly as xflow.c does under
 * bench_rotate_flows (include/bench.h), and does the kind's map operation
 * and nothing else:
 *
 * - hash kinds: look the key up and add one packet and its bytes (atomic
 *   adds on the shared kinds); insert the key if it is missing;
 * - array kinds: index the array by a hash of the rotated value and add
 *   (atomic on the shared array); fill the slot in if it is empty. No key
 *   comparison and no probing: that is xflow's part of the cost;
 * - ringbuf: reserve a struct flow_event, fill it in, submit it.
 *
 * No map-in-map, no clock, no counters map: only the map itself.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "include/types.h" /* bpf/include, with -I.. */
#include "include/bench.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader, as in xflow.c. */
const volatile __u32 bare_kind = KIND_PERCPU_HASH;
const volatile __u32 bare_slots_n = 1; /* entries of bare_slots */

#define BARE_BYTES 100 /* the bytes added per packet */

__u64 bare_missed; /* packets whose update failed */

/* User space rewrites the type and size of the map in use. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
} bare_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flow_slot);
} bare_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} bare_events SEC(".maps");

static __always_inline int bare_shared(void)
{
	return bare_kind == KIND_HASH || bare_kind == KIND_LRU_HASH ||
	       bare_kind == KIND_ARRAY;
}

static __always_inline void bare_add(struct flow_value *v)
{
	if (bare_shared()) {
		__sync_fetch_and_add(&v->packets, 1);
		__sync_fetch_and_add(&v->bytes, BARE_BYTES);
	} else {
		v->packets += 1;
		v->bytes += BARE_BYTES;
	}
}

static __always_inline void bare_update(void)
{
	struct flow_key k = {
		.src = { [10] = 0xff, [11] = 0xff, [12] = 10, [15] = 1 },
		.dst = { [10] = 0xff, [11] = 0xff, [12] = 10, [15] = 2 },
		.src_port = 1000,
		.dst_port = 80,
		.ifindex = 1,
		.proto = 6,
		.ip_version = 4,
	};
	__u32 r = *(__u32 *)&k.src[12] ^ bench_rotation();

	*(__u32 *)&k.src[12] = r;

	if (bare_kind == KIND_RINGBUF) {
		struct flow_event *e =
			bpf_ringbuf_reserve(&bare_events, sizeof(*e), 0);

		if (!e) {
			bare_missed++;
			return;
		}
		e->key = k;
		e->ts_ns = 0;
		e->bytes = BARE_BYTES;
		e->packets = 1;
		e->tcp_flags = 0;
		e->tos = 0;
		e->pad[0] = e->pad[1] = e->pad[2] = 0;
		bpf_ringbuf_submit(e, 0);
		return;
	}

	if (bare_kind == KIND_ARRAY || bare_kind == KIND_PERCPU_ARRAY) {
		/* Fibonacci hash, reduced by a multiply (no divide). */
		__u32 idx = ((__u64)(r * 0x9e3779b1u) * bare_slots_n) >> 32;
		struct flow_slot *s = bpf_map_lookup_elem(&bare_slots, &idx);

		if (!s) {
			bare_missed++;
			return;
		}
		if (s->state == SLOT_READY) {
			bare_add(&s->val);
			return;
		}
		s->key = k;
		s->val.packets = 1;
		s->val.bytes = BARE_BYTES;
		s->state = SLOT_READY;
		return;
	}

	struct flow_value *v = bpf_map_lookup_elem(&bare_hash, &k);

	if (v) {
		bare_add(v);
		return;
	}
	struct flow_value nv = { .packets = 1, .bytes = BARE_BYTES };

	if (bpf_map_update_elem(&bare_hash, &k, &nv, BPF_NOEXIST) == 0)
		return;
	v = bpf_map_lookup_elem(&bare_hash, &k);
	if (!v) {
		bare_missed++;
		return;
	}
	bare_add(v);
}

SEC("xdp")
int bare_xdp(struct xdp_md *ctx)
{
	bare_update();
	return XDP_PASS;
}

SEC("tc")
int bare_tc(struct __sk_buff *skb)
{
	bare_update();
	return TC_ACT_UNSPEC;
}

/* The baselines: programs that do nothing at all. */
SEC("xdp")
int pass_xdp(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int pass_tc(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}
