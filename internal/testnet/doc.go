// Package testnet builds throw-away two-namespace test networks and sends
// traffic whose per-flow packet and byte counts are known, so that tests can
// compare what xflow's eBPF programs counted against ground truth.
//
// # Topology
//
// NewPair creates two fresh named network namespaces (A and B) joined by a
// veth pair. A owns 10.199.0.1/24 and fd00:199::1/64, B owns 10.199.0.2/24 and
// fd00:199::2/64. Both sides have permanent (static) neighbour entries for the
// other side, so no ARP or neighbour discovery is needed for test traffic.
// All addresses live only inside the pair's namespaces; nothing here ever
// sends to an address outside them. Everything is removed by t.Cleanup.
//
// # Ground truth
//
// There are two sources of expected counts:
//
//   - Senders that know their counts by construction: SendUDP, SendICMPEcho
//     (and SendRawFrames, where the caller knows what it built). Their Expect
//     is exact, independent of the kernel.
//   - The capture oracle (Capture): an AF_PACKET socket with PACKET_VNET_HDR
//     that sees every frame crossing one veth end, including GSO/GRO
//     super-packets, and expands those into wire-segment counts. Use it for
//     TCP, where segmentation is decided by the kernel (TSO/GSO/GRO).
//
// Counts are IP-level: Bytes is the IPv4 total length or 40 + IPv6 payload
// length, summed over wire segments; Ethernet and VLAN headers are excluded.
//
// # Background traffic
//
// NewPair turns off the usual IPv6 autoconfiguration noise in both
// namespaces (accept_ra=0, router_solicitations=0, accept_dad=0,
// dad_transmits=0 on "all", "default" and the veth; the global addresses are
// added with nodad) and installs permanent neighbour entries, so no ARP, ND,
// DAD or router solicitation is ever needed.
//
// The one thing the kernel still sends by itself is MLDv2 reports (ICMPv6
// type 143 to ff02::16 from the link-local address, 96 IP bytes each, with a
// hop-by-hop router-alert header; FlowID.DstPort 0x8f00) when the veth gets
// carrier and joins the solicited-node groups of its addresses. Normally
// they are repeated at random times over the next second. NewPair sets
// mldv1/mldv2_unsolicited_report_interval to 1 ms, so all of them (three
// per side were observed) go out right at link-up, and then waits until the
// veth has been silent for 60 ms (Pair.SettleFrames counts what it waited
// out; the wait costs about 130 ms per pair). Afterwards an idle pair was
// observed to be completely silent.
//
// Traffic can still appear if a test causes it: sending to an address with no
// static neighbour entry (ARP/ND), changing addresses or bringing links
// down/up (new MLD reports, IPv6 addresses tentative again), closing a UDP
// socket before the peer stops sending (ICMP port unreachable), or TCP's own
// retransmissions (see below).
//
// # Readiness
//
// IPv6 addresses stay tentative, and packets to them are silently dropped,
// until the veth has carrier and addrconf's work item has run, some
// milliseconds after the link is set up, nodad or not. NewPair waits (bounded)
// until both veths are up, no address is tentative and the local routes
// exist; without that wait the first IPv6 SYN of a test was regularly lost
// (1 s SYN retransmission).
//
// # GSO, GRO and TCP on veth
//
// Observed on kernel 6.18:
//
//   - veth defaults: TSO on, GSO on, GRO off. With TSO on, TCP hands the veth
//     super-packets of up to 64 KB; the veth passes the skb to its peer
//     unchanged, so both the sender's egress tap and the receiver's ingress
//     tap (and TC programs on either side) see the same super-packets.
//   - With TSO and GSO off, segmentation happens in software before the
//     egress tap: both taps see wire-sized segments.
//   - GRO on the receiving veth (which switches it to NAPI) merges wire-sized
//     segments again: the receiver's ingress tap sees super-packets that the
//     sender's egress tap never saw.
//   - The virtio_net_hdr the kernel fills in gives gso_size and gso_type;
//     its hdr_len is only skb_headlen(), documented as a hint. On veth it
//     always equalled the real L2+L3+L4 header length, but the oracle uses
//     the parsed headers (CaptureStats.HdrLenMismatch counts differences).
//   - tcpi_segs_out / tcpi_segs_in of the client socket matched the
//     oracle's expanded packet counts exactly; the server (accepted) socket's
//     segs_out misses the SYN-ACK.
//   - TCP packet counts differ run to run, and retransmissions happen even
//     on an idle veth: tail loss probes when an ACK is delayed >10 ms (the
//     Go scheduler on 2 busy CPUs manages that; tcp_early_retrans=0 in the
//     namespace stops them), spurious fast retransmits after reordering, and
//     occasional drops in the per-CPU backlog (tx_dropped on the sending
//     veth). Retransmitted segments are real packets on the veth, so an
//     eBPF counter must count them: compare against the capture, not against
//     application bytes.
//   - IPv6 BIG TCP (payload length 0 without a jumbo option) is not
//     decoded; such frames would count as CaptureStats.DecodeErrs.
package testnet
