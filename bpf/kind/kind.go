// Package kind names the flow stores the data plane can count into
// (datapath.map). It is the one list of them: the configuration validates
// names against it and the data plane (package bpf) builds stores from it,
// without the configuration depending on the eBPF library.
package kind

import (
	"fmt"
	"strings"
)

// Kind is a flow store.
type Kind string

const (
	Hash          Kind = "hash"
	PerCPUHash    Kind = "percpu_hash"
	LRUHash       Kind = "lru_hash"
	LRUPerCPUHash Kind = "lru_percpu_hash"
	Array         Kind = "array"
	PerCPUArray   Kind = "percpu_array"
	Ringbuf       Kind = "ringbuf"
)

// Default is the kind used when none is configured.
const Default = PerCPUHash

var all = []Kind{Hash, PerCPUHash, LRUHash, LRUPerCPUHash, Array, PerCPUArray, Ringbuf}

// All returns every kind.
func All() []Kind { return append([]Kind(nil), all...) }

// Names returns every kind's name.
func Names() []string {
	s := make([]string, len(all))
	for i, k := range all {
		s[i] = string(k)
	}
	return s
}

// Parse checks a kind's name.
func Parse(s string) (Kind, error) {
	for _, k := range all {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("unknown map kind %q (want one of %s)", s, strings.Join(Names(), ", "))
}

// PerCPU says whether the store keeps one value per CPU.
func (k Kind) PerCPU() bool { return k == PerCPUHash || k == LRUPerCPUHash || k == PerCPUArray }

// IsArray says whether the store is an array of flow-addressed slots.
func (k Kind) IsArray() bool { return k == Array || k == PerCPUArray }

// LRU says whether the kernel evicts the store's least recently used
// entries when it is full.
func (k Kind) LRU() bool { return k == LRUHash || k == LRUPerCPUHash }
