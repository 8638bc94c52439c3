/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Benchmarks only: a deterministic rotation of the flow key, shared by the
 * production programs (xflow.c) and the bare map-update programs (bare/bare.c),
 * so that both pay for exactly the same code.
 *
 * bench_rotate_flows is a load-time constant: zero in production, where the
 * verifier removes every use of it. When it is n > 0, each packet XORs a
 * rotation r (0 <= r < n) into the low 32 bits of the flow's source address,
 * and the next packet's rotation is r + step (mod n), step = bench_skip + 1
 * (all in .bss: zero is a step of 1). With step 1, n
 * packets in a row make n distinct flows (the warm-up); with a step coprime
 * to n, the next n packets visit every flow once, in an order unrelated to
 * the order in which they were created (and so to where the map put them:
 * revisiting flows in creation order would walk the map's preallocated
 * elements in address order, which real traffic does not). The state is
 * global, for BPF_PROG_TEST_RUN, which runs on one CPU at a time; user space
 * sets bench_skip between runs.
 */
#ifndef XFLOW_BENCH_H
#define XFLOW_BENCH_H

#include <linux/types.h>

const volatile __u32 bench_rotate_flows = 0;

__u32 bench_next;    /* rotation of the next packet, below bench_rotate_flows */
__u32 bench_skip;    /* step - 1: 0 <= bench_skip < bench_rotate_flows */
__u64 bench_packets; /* packets rotated: what the test runs really ran */

/* Returns this packet's rotation (no division: a divide would cost more
 * than some of the map updates measured). */
static __always_inline __u32 bench_rotation(void)
{
	__u32 r = bench_next;
	__u32 next = r + bench_skip + 1;

	if (next >= bench_rotate_flows)
		next -= bench_rotate_flows;
	bench_next = next;
	bench_packets++;
	return r;
}

#endif
