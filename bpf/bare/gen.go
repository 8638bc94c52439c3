// Package bare is the data plane's benchmark side, kept out of package bpf
// and so out of the xflow binary: the bare map update of each store kind
// and the XDP_PASS/TC pass programs (bare.c), the yardsticks the production
// programs are measured against; and the helpers that drive the production
// data plane under benchmark through bpf's generic API (its load-time
// rotation constants set in the spec, its store filled, counted and
// emptied in place).
package bare

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu" -target bpfel bare bare.c -- -I..
