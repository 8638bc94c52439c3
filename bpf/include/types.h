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
	__u16 sampling; /* mode << 14 | N: sampled 1:N (N 0 or 1: all counted) */
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
	__u8 pad;
	__u16 sampling; /* as in struct flow_value */
};

/* Packet sampling (include/sample.h). */
enum xflow_sample_mode {
	SAMPLE_RANDOM = 0,        /* each packet with probability 1/N */
	SAMPLE_DETERMINISTIC = 1, /* every Nth packet, counted per CPU */
	SAMPLE_HASH = 2,          /* whole flows: a seeded hash of the flow key */
};

/* The `ifaces` map's value (per CPU), keyed by ifindex; ifindex 0 is the
 * default for interfaces not in the map. User space writes rate, mode and
 * seed into every CPU's copy; the programs write the rest. */
struct iface_conf {
	__u32 rate;      /* 1:N; 0 or 1: every packet */
	__u32 mode;      /* enum xflow_sample_mode */
	__u32 seed;      /* hash mode */
	__u32 count;     /* deterministic: packets since the last selected */
	__u64 packets[2];/* every IP packet seen, by direction, before filters
			  * and sampling */
	__u64 bytes[2];  /* their IP bytes */
};

/* Filters (include/filter.h): rule sets are bitmaps of rule numbers. */
#define FILTER_MAX_RULES 1024
#define FILTER_WORDS (FILTER_MAX_RULES / 64)

struct rule_set {
	__u64 w[FILTER_WORDS];
};

/* LPM trie key: IPv4 addresses as ::ffff:a.b.c.d, so a v4 /n is /96+n. */
struct lpm_key {
	__u32 prefixlen;
	__u8 addr[16];
};

enum xflow_filter_action {
	FILTER_COUNT = 0, /* count the packet (at the rule's sampling rate) */
	FILTER_SKIP = 1,  /* no flow, no record */
};

struct filter_rule {
	__u32 action; /* enum xflow_filter_action */
	__u32 rate;   /* 1:N for the packets it counts; 0: the interface's */
};

/* Indexes into the filter_sets array beside the 256 protocol sets. */
enum xflow_filter_set {
	FSET_DIR_INGRESS = 256,
	FSET_DIR_EGRESS = 257,
	FSET_SPORT_ANY = 258, /* rules without a source port */
	FSET_DPORT_ANY = 259, /* rules without a destination port */
	FSET_MAX = 260,
};

#endif
