/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The maps of the xflow data plane.
 *
 * The flow store is reached through a one-slot map-in-map, so that user space
 * can swap in a fresh store and drain the old one once no program can write
 * to it any more (the kernel waits for running programs before a map-in-map
 * update returns). Only the store of the kind chosen at load time is used;
 * the others are created with the smallest size and never written.
 *
 * User space rewrites the inner map type of `flows` to the chosen hash kind
 * (hash, percpu_hash, lru_hash, lru_percpu_hash), the inner type of `slots`
 * to array or percpu_array, and all sizes, before loading.
 */
#ifndef XFLOW_MAPS_H
#define XFLOW_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "types.h"

/* Hash kinds: key -> counters. */
struct flows_inner {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct flows_inner);
} flows SEC(".maps");

/* Array kinds: a flow-addressed table of slots. */
struct slots_inner {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flow_slot);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct slots_inner);
} slots SEC(".maps");

/* Ring-buffer kind: one struct flow_event per packet. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

/* enum xflow_counter, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

#endif
