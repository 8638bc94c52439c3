/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Packet parsing, shared by the XDP and TC programs.
 *
 * parse() walks Ethernet, up to two VLAN tags, IPv4 (honouring IHL) or IPv6
 * (walking up to IPV6_MAX_EXT extension headers) and the first bytes of the
 * transport header, and fills a struct pkt. It never writes to the packet.
 * The rules, mirrored by the Go reference decoder in bpf/reference_test.go:
 *
 * - A frame whose IP header is missing, cut short or invalid yields no flow:
 *   parse() returns PARSE_NON_IP, PARSE_TRUNCATED or PARSE_MALFORMED and the
 *   caller bumps that counter.
 * - A valid IP packet always yields a flow. Where its transport header is
 *   missing (cut by the IP length), it is a non-first fragment, or the IPv6
 *   extension chain is too long, the flow has ports 0 and a flag says why.
 * - ip_len is the IP length from the header (IPv4 total length, IPv6 40 +
 *   payload length), never the frame length: Ethernet padding and L2 headers
 *   are not flow bytes.
 */
#ifndef XFLOW_PARSE_H
#define XFLOW_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "types.h"

#define IPV6_MAX_EXT 6

#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif
#define IPPROTO_HOPOPTS_ 0
#define IPPROTO_ROUTING_ 43
#define IPPROTO_FRAGMENT_ 44
#define IPPROTO_AH_ 51
#define IPPROTO_DSTOPTS_ 60

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_RST 0x04

enum parse_result {
	PARSE_FLOW = 0,
	PARSE_NON_IP,
	PARSE_TRUNCATED,
	PARSE_MALFORMED,
};

struct pkt {
	struct flow_key key;
	__u32 ip_len;    /* IP bytes of this packet */
	__u32 l3_off;    /* offset of the IP header in the frame */
	__u32 hdrs_len;  /* IP + extension + L4 header bytes (for GSO) */
	__u32 tcp_flags;
	__u8 tos;
	__u8 l4_trunc;   /* CNT_L4_TRUNCATED */
	__u8 frag;       /* CNT_FRAGMENTS */
	__u8 ext_limit;  /* CNT_IPV6_EXT_LIMIT */
	__u16 sampling;  /* mode << 14 | N: selected at 1:N (sample.h) */
} __attribute__((aligned(8)));

struct vlan_hdr_ {
	__be16 tci;
	__be16 encap_proto;
};

/* IPv4 header without bitfields (their layout is the compiler's choice). */
struct ipv4_hdr_ {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__be16 check;
	__be32 saddr;
	__be32 daddr;
};

struct ipv6_hdr_ {
	__be32 ver_tc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

/* Reads the ports (or ICMP type and code) and TCP flags of the transport
 * header at l4, which has l4_len bytes left inside the IP packet. Returns
 * the transport header length (0 where none was read). A header that does
 * not fit in the IP packet (or the frame) leaves ports 0 and sets l4_trunc. */
static __always_inline __u32 parse_l4(struct pkt *p, void *l4, __u32 l4_len,
				      void *data_end)
{
	__u8 proto = p->key.proto;

	if (proto == IPPROTO_TCP) {
		if (l4_len < 20 || l4 + 20 > data_end)
			goto trunc;
		__u16 w = bpf_ntohs(*(__be16 *)(l4 + 12));
		p->key.src_port = bpf_ntohs(*(__be16 *)l4);
		p->key.dst_port = bpf_ntohs(*(__be16 *)(l4 + 2));
		p->tcp_flags = w & 0x01ff; /* NS, CWR, ECE, URG, ACK, PSH, RST, SYN, FIN */
		__u32 doff = (w >> 12) * 4;
		return doff < 20 ? 20 : doff;
	}
	if (proto == IPPROTO_UDP || proto == IPPROTO_UDPLITE) {
		if (l4_len < 8 || l4 + 8 > data_end)
			goto trunc;
		p->key.src_port = bpf_ntohs(*(__be16 *)l4);
		p->key.dst_port = bpf_ntohs(*(__be16 *)(l4 + 2));
		return 8;
	}
	if (proto == IPPROTO_SCTP) {
		if (l4_len < 12 || l4 + 12 > data_end)
			goto trunc;
		p->key.src_port = bpf_ntohs(*(__be16 *)l4);
		p->key.dst_port = bpf_ntohs(*(__be16 *)(l4 + 2));
		return 12;
	}
	if ((proto == IPPROTO_ICMP && p->key.ip_version == 4) ||
	    (proto == IPPROTO_ICMPV6 && p->key.ip_version == 6)) {
		if (l4_len < 4 || l4 + 4 > data_end)
			goto trunc;
		/* NetFlow's convention: type and code in the destination port */
		p->key.dst_port = (__u16)(*(__u8 *)l4) << 8 | *(__u8 *)(l4 + 1);
		return 4;
	}
	return 0; /* a protocol without ports: GRE, ESP, no next header, ... */
trunc:
	p->l4_trunc = 1;
	return 0;
}

static __always_inline int parse_ipv4(struct pkt *p, void *data, void *l3,
				      void *data_end, __u32 frame_len, int gso)
{
	struct ipv4_hdr_ *iph = l3;

	if ((void *)(iph + 1) > data_end)
		return PARSE_TRUNCATED;
	if ((iph->ver_ihl >> 4) != 4)
		return PARSE_MALFORMED;
	__u32 hl = (iph->ver_ihl & 0x0f) * 4;
	if (hl < 20)
		return PARSE_MALFORMED;
	__u32 avail = frame_len - p->l3_off;
	if (hl > avail || l3 + hl > data_end)
		return PARSE_TRUNCATED;
	__u32 tot = bpf_ntohs(iph->tot_len);
	if (tot == 0 && gso) /* BIG TCP: the length lives in the skb */
		tot = avail;
	if (tot < hl)
		return PARSE_MALFORMED;
	if (tot > avail)
		return PARSE_TRUNCATED;

	p->ip_len = tot;
	p->tos = iph->tos;
	p->key.ip_version = 4;
	p->key.proto = iph->protocol;
	/* v4-mapped: ::ffff:a.b.c.d */
	*(__u32 *)&p->key.src[8] = bpf_htonl(0x0000ffff);
	*(__u32 *)&p->key.src[12] = iph->saddr;
	*(__u32 *)&p->key.dst[8] = bpf_htonl(0x0000ffff);
	*(__u32 *)&p->key.dst[12] = iph->daddr;

	if (bpf_ntohs(iph->frag_off) & 0x1fff) {
		p->frag = 1; /* a later fragment: no transport header */
		p->hdrs_len = hl;
		return PARSE_FLOW;
	}
	p->hdrs_len = hl + parse_l4(p, l3 + hl, tot - hl, data_end);
	return PARSE_FLOW;
}

static __always_inline int parse_ipv6(struct pkt *p, void *data, void *l3,
				      void *data_end, __u32 frame_len, int gso)
{
	struct ipv6_hdr_ *ip6 = l3;

	if ((void *)(ip6 + 1) > data_end)
		return PARSE_TRUNCATED;
	__u32 vtf = bpf_ntohl(ip6->ver_tc_flow);
	if ((vtf >> 28) != 6)
		return PARSE_MALFORMED;
	__u32 avail = frame_len - p->l3_off;
	__u32 plen = bpf_ntohs(ip6->payload_len);
	__u32 len;
	if (plen == 0)
		len = gso ? avail : 40; /* BIG TCP jumbo on TC, else header only */
	else
		len = 40 + plen;
	if (len > avail)
		return PARSE_TRUNCATED;

	p->ip_len = len;
	p->tos = (vtf >> 20) & 0xff;
	p->key.ip_version = 6;
	__builtin_memcpy(p->key.src, ip6->saddr, 16);
	__builtin_memcpy(p->key.dst, ip6->daddr, 16);

	__u8 nh = ip6->nexthdr;
	__u32 off = 40;
	int i;

	for (i = 0; i < IPV6_MAX_EXT; i++) {
		__u32 size;
		__u8 *h;

		if (nh != IPPROTO_HOPOPTS_ && nh != IPPROTO_ROUTING_ &&
		    nh != IPPROTO_DSTOPTS_ && nh != IPPROTO_AH_ &&
		    nh != IPPROTO_FRAGMENT_)
			break;
		/* Every extension header is at least 8 bytes long. */
		if (off > 0x7fff || off + 8 > len)
			goto l4_trunc;
		h = l3 + off;
		if ((void *)(h + 8) > data_end)
			goto l4_trunc;
		if (nh == IPPROTO_FRAGMENT_) {
			nh = h[0];
			off += 8;
			if (bpf_ntohs(*(__be16 *)(h + 2)) & 0xfff8) {
				p->frag = 1; /* a later fragment */
				p->key.proto = nh;
				p->hdrs_len = off;
				return PARSE_FLOW;
			}
			continue;
		}
		if (nh == IPPROTO_AH_)
			size = ((__u32)h[1] + 2) * 4;
		else
			size = ((__u32)h[1] + 1) * 8;
		if (off + size > len)
			goto l4_trunc;
		nh = h[0];
		off += size;
	}
	p->key.proto = nh;
	if (nh == IPPROTO_HOPOPTS_ || nh == IPPROTO_ROUTING_ ||
	    nh == IPPROTO_DSTOPTS_ || nh == IPPROTO_AH_ ||
	    nh == IPPROTO_FRAGMENT_) {
		p->ext_limit = 1;
		p->hdrs_len = off;
		return PARSE_FLOW;
	}
	if (off > 0x7fff)
		goto l4_trunc; /* unreachable: keeps the verifier's bounds */
	p->hdrs_len = off + parse_l4(p, l3 + off, len - off, data_end);
	return PARSE_FLOW;

l4_trunc:
	p->l4_trunc = 1;
	p->key.proto = nh;
	p->hdrs_len = off;
	return PARSE_FLOW;
}

/* parse fills p from the frame [data, data_end) of frame_len bytes in all
 * (frame_len can exceed data_end - data for multi-buffer XDP frames and
 * non-linear skbs). hw_vlan is a VLAN tag the NIC or stack took out of the
 * frame (TC: skb->vlan_tci), or -1. gso says the frame is a GSO super-packet,
 * whose IP length may be 0 (BIG TCP). */
static __always_inline int parse(struct pkt *p, void *data, void *data_end,
				 __u32 frame_len, int hw_vlan, int gso)
{
	struct ethhdr *eth = data;
	void *pos;
	int tags = 0, i;

	if ((void *)(eth + 1) > data_end)
		return PARSE_TRUNCATED;
	__be16 proto = eth->h_proto;
	pos = eth + 1;
	if (hw_vlan >= 0) {
		p->key.vlan = hw_vlan & 0x0fff;
		tags = 1;
	}
	for (i = 0; i < 2; i++) {
		struct vlan_hdr_ *vh = pos;

		if (proto != bpf_htons(ETH_P_8021Q) &&
		    proto != bpf_htons(ETH_P_8021AD))
			break;
		if (tags >= 2)
			break;
		if ((void *)(vh + 1) > data_end)
			return PARSE_TRUNCATED;
		if (tags == 0)
			p->key.vlan = bpf_ntohs(vh->tci) & 0x0fff;
		proto = vh->encap_proto;
		pos = vh + 1;
		tags++;
	}
	p->l3_off = pos - data;
	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(p, data, pos, data_end, frame_len, gso);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(p, data, pos, data_end, frame_len, gso);
	return PARSE_NON_IP;
}

#endif
