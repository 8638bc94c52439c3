/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Types shared by the xflow eBPF programs and user space.
 *
 * Every struct has explicit padding so that its layout is the same in C and
 * Go and no byte is left uninitialised (a flow key is hashed and compared as
 * raw bytes, so stray padding would split one flow into many).
 */
#ifndef XFLOW_TYPES_H
#define XFLOW_TYPES_H

#include <linux/types.h>

/* Where a packet was seen: the IPFIX flowDirection values. */
enum xflow_direction {
	DIR_INGRESS = 0,
	DIR_EGRESS = 1,
};

/* The flow store, chosen at load time through the map_kind constant. */
enum xflow_map_kind {
	KIND_PERCPU_HASH = 0, /* the default */
	KIND_HASH = 1,
	KIND_LRU_HASH = 2,
	KIND_LRU_PERCPU_HASH = 3,
	KIND_ARRAY = 4,
	KIND_PERCPU_ARRAY = 5,
	KIND_RINGBUF = 6,
};

/* Per-CPU counters of what did not become (or not only became) a flow
 * update. Indexes into the `counters` per-CPU array. All are monotonic:
 * user space takes deltas, nothing ever resets them. */
enum xflow_counter {
	CNT_NON_IP = 0,      /* not IPv4/IPv6 (ARP, LLDP, 3+ VLAN tags, ...) */
	CNT_TRUNCATED,       /* IP header or IP length beyond the frame: no flow */
	CNT_MALFORMED,       /* bad version, IHL < 5, total length < header */
	CNT_L4_TRUNCATED,    /* flow counted under ports 0: L4 header missing */
	CNT_IPV6_EXT_LIMIT,  /* more IPv6 extension headers than we walk */
	CNT_FRAGMENTS,       /* non-first fragments (counted under ports 0) */
	CNT_MISSED_PACKETS,  /* packets lost: map full, probing failed, ring full */
	CNT_MISSED_BYTES,    /* their IP bytes */
	CNT_INSERTS,         /* flow entries created (hash kinds and arrays) */
	CNT_MAX,
};

struct flow_key {
	__u8 src[16];   /* IPv6, or IPv4 as ::ffff:a.b.c.d */
	__u8 dst[16];
	__u16 src_port; /* host byte order; 0 where there is none */
	__u16 dst_port; /* ICMP/ICMPv6: type << 8 | code */
	__u32 ifindex;
	__u16 vlan;     /* outer VLAN ID, 0 if untagged */
	__u8 proto;     /* IP protocol (IPv6: after extension headers) */
	__u8 ip_version;/* 4 or 6 */
	__u8 direction; /* enum xflow_direction */
	__u8 pad[3];
};

struct flow_value {
	__u64 packets;
	__u64 bytes;    /* IP bytes: IPv4 total length, IPv6 40 + payload */
	__u64 first_ns; /* bpf_ktime_get_ns() of the first packet */
	__u64 last_ns;  /* and of the last */
	__u32 tcp_flags;/* TCP flags (with NS, ECE, CWR) OR-ed over the flow */
	__u8 tos;       /* IPv4 TOS / IPv6 traffic class of the first packet */
	__u8 fin_rst;   /* 1 once a FIN or RST was seen */
	__u16 pad;
};

/* An array slot: flow-addressed, the key stored beside its counters. */
enum xflow_slot_state {
	SLOT_EMPTY = 0,
	SLOT_CLAIMED = 1, /* a CPU is writing the key (shared array only) */
	SLOT_READY = 2,
};

struct flow_slot {
	struct flow_key key;
	__u32 state;
	__u32 pad;
	struct flow_value val;
};

/* One ring-buffer record per packet (GSO: per super-packet). */
struct flow_event {
	struct flow_key key;
	__u64 ts_ns;
	__u32 bytes;
	__u32 packets;
	__u32 tcp_flags;
	__u8 tos;
	__u8 pad[3];
};

#endif
