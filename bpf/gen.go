// Package bpf holds the xflow data plane: the eBPF programs (C, in this
// directory), their bpf2go-generated bindings, and the Go code that loads,
// pins, attaches and reads them.
package bpf

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu" -target bpfel -type flow_key -type flow_value -type flow_slot -type flow_event -type xflow_counter -type xflow_map_kind xflow xflow.c -- -I./include
