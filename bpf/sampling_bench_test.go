package bpf

import (
	"fmt"
	"testing"
)

// BenchmarkSamplingFilters measures the XDP program per packet
// (BPF_PROG_TEST_RUN, ns/pkt as the kernel times it) with sampling 1:1,
// 1:10 and 1:100 in each mode and with 0, 10 and 1000 filter rules, beside
// the unsampled program without filters and the parse-only baseline, all
// in one run. 1024 flows (the benchmark rotation of the source address),
// the default store; a warm-up creates every flow first.
func BenchmarkSamplingFilters(b *testing.B) {
	const flows = 1024
	frame := tcpFrame(b)
	type variant struct {
		name      string
		s         Sampling
		rules     int
		parseOnly bool
	}
	vs := []variant{
		{name: "parse_only", parseOnly: true},
		{name: "unsampled"},
		{name: "sampling=1:1", s: Sampling{Rate: 1}},
	}
	for _, m := range []SampleMode{SampleRandom, SampleDeterministic, SampleHash} {
		for _, n := range []uint32{10, 100} {
			vs = append(vs, variant{name: fmt.Sprintf("sampling=1:%d/%s", n, m), s: Sampling{Rate: n, Mode: m, Seed: 1}})
		}
	}
	for _, n := range []int{10, 1000} {
		vs = append(vs, variant{name: fmt.Sprintf("filters=%d", n), rules: n})
	}
	vs = append(vs, variant{name: "filters=1000/sampling=1:100/random", rules: 1000, s: Sampling{Rate: 100}})
	for _, v := range vs {
		b.Run(v.name, func(b *testing.B) {
			spec, err := Spec()
			if err != nil {
				b.Fatal(err)
			}
			if err := spec.Variables["bench_rotate_flows"].Set(uint32(flows)); err != nil {
				b.Fatal(err)
			}
			if v.parseOnly {
				if err := spec.Variables["bench_parse_only"].Set(uint32(1)); err != nil {
					b.Fatal(err)
				}
			}
			d := loadOpts(b, Options{Spec: spec, MaxFlows: 2 * flows, Sampling: v.s, Filters: manyRules(v.rules, false)})
			prog := d.Programs().XDP
			if _, _, err := prog.Benchmark(frame, flows, nil); err != nil { // create the flows
				b.Fatal(err)
			}
			if err := d.Variable("bench_skip").Set(uint32(flows/2 - 1)); err != nil { // visit them out of order (513 is coprime to 1024)
				b.Fatal(err)
			}
			b.ResetTimer()
			ret, per, err := prog.Benchmark(frame, b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			if ret != 2 { // XDP_PASS
				b.Fatalf("program returned %d", ret)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
		})
	}
}
