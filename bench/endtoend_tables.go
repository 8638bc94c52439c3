package bench

import (
	"fmt"
	"math"
	"strings"
)

// Tables gives one table per flow count.
func (r *EndToEndResult) Tables() []Table {
	var out []Table
	for i, b := range r.Blocks {
		t := Table{
			Title: fmt.Sprintf("End to end: veth pair, %s", flowsName(b.Flows)),
			Note:  r.note(b, i == len(r.Blocks)-1),
			Header: []string{"agent", "Mpps", "ratio", "counted", "agent CPU", "data plane",
				"rx path", "total extra"},
		}
		for _, row := range b.Rows {
			if row.Error != "" {
				msg, _, _ := strings.Cut(row.Error, "\n")
				t.Rows = append(t.Rows, []string{row.Agent, "failed: " + msg, "", "", "", "", "", ""})
				continue
			}
			t.Rows = append(t.Rows, []string{
				row.Agent,
				fmtStat(row.RateMpps, 3),
				fmtStat(row.Ratio, 3),
				fmtCounted(row.Counted),
				fmtStatPtr(row.AgentCPU, 4),
				fmtStatPtr(row.DataPlaneCPU, 4),
				fmtStatPtr(row.RxPathCPU, 4),
				fmtStatPtr(row.ExtraCPU, 4),
			})
		}
		out = append(out, t)
	}
	return out
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func flowsName(n int) string {
	if n == 1 {
		return "1 flow"
	}
	return fmt.Sprintf("%d flows", n)
}

func (r *EndToEndResult) note(blk EndToEndFlow, last bool) string {
	flows := blk.Flows
	var b strings.Builder
	fmt.Fprintf(&b, "An XDP program run with BPF_PROG_TEST_RUN in live-frames mode (pinned to CPU %d) sends "+
		"%d-byte IPv4 UDP frames (%s; UDP source port from a sequence number) out of veth A; veth B "+
		"receives them in its NAPI, in the softirq of the same CPU, so whatever an agent adds to the "+
		"receive path slows the sender down. B's stack drops them right after the taps (another "+
		"MAC: PACKET_OTHERHOST). With no agent and for softflowd and pmacctd, B runs an XDP_PASS "+
		"program (veth takes redirected frames only with one); xflow attaches its own. Each agent is "+
		"started once per flow count and stopped with SIGTERM (softflowd: `softflowctl shutdown`), "+
		"after which it must have exported every flow. Figures: median of %s of %g s each "+
		"(±: max-min over the median).\n\n",
		r.GeneratorCPU, r.FrameBytes, flowsName(flows), plural(r.Runs, "run"), r.RunSeconds)
	fmt.Fprintf(&b, "Mpps: frames B received over the sender's wall time; no agent: the mean of an opening and a "+
		"closing measurement of the block (closing/opening rate: %.3f). ", blk.BaselineDrift)
	b.WriteString("Ratio: over the no-agent rate " +
		"of the same run index. Counted: packets in the flow records our IPFIX collector decoded, over " +
		"packets sent, over all runs (the runs send the same flows, long-lived ones). CPU columns are seconds per million " +
		"packets: agent CPU = the agent's processes, user and system, children included (xflow: the " +
		"daemon's user space); data plane = xflow's XDP program's own run time from BPF run-time " +
		fmt.Sprintf("statistics (measured in an extra send of %g s per run, as the statistics slow ", r.StatsSeconds) +
		"every program down); rx path = 1/rate - 1/(no-agent rate): what the agent added to the " +
		"saturated receiving CPU (xflow's program beyond XDP_PASS; the packet sockets' copies for " +
		"softflowd and pmacctd); total extra = all CPUs' busy time during the sends (/proc/stat) plus " +
		"the agent's CPU outside them, minus the same without an agent (includes anything else running " +
		"on the machine).")
	for _, s := range blk.Notes {
		b.WriteString("\n\n" + s)
	}
	if last {
		for _, s := range append(r.AgentSettings, r.Notes...) {
			b.WriteString("\n\n" + s)
		}
	}
	return b.String()
}

// fmtStat renders a figure with prec significant digits.
func fmtStat(s Stat, prec int) string { return formatStat(s, 'g', prec) }

func fmtStatPtr(s *Stat, prec int) string {
	if s == nil {
		return "-"
	}
	return fmtStat(*s, prec)
}

// fmtCounted prints a fraction as a percentage: "100%" only when every
// run counted every packet, else the median with the range.
func fmtCounted(s *Stat) string {
	if s == nil || math.IsNaN(s.Median) {
		return "-"
	}
	if s.Min == 1 && s.Max == 1 {
		return "100%"
	}
	if s.Median > 0.99995 && s.Median < 1 {
		return fmt.Sprintf("%.6f%%", 100*s.Median) // not 100.000%
	}
	v := fmt.Sprintf("%.3f%%", 100*s.Median)
	if len(s.Runs) > 1 {
		v += fmt.Sprintf(" (%.3f–%.3f)", 100*s.Min, 100*s.Max)
	}
	return v
}

// Plots: the rate ratio, the fraction counted and the agent's CPU per
// million packets, each against the flow count, one series per agent.
func (r *EndToEndResult) Plots() []Plot {
	rate := Plot{Name: "e2e_rate", Title: "End to end: received rate over the no-agent rate",
		XLabel: "flows", YLabel: "rate / no-agent rate", LogX: true}
	counted := Plot{Name: "e2e_counted", Title: "End to end: packets counted",
		XLabel: "flows", YLabel: "counted / sent", LogX: true}
	cpu := Plot{Name: "e2e_cpu", Title: "End to end: agent CPU per million packets (xflow: daemon + XDP program)",
		XLabel: "flows", YLabel: "CPU s per Mpkt", LogX: true, LogY: true}
	series := map[string]*[3]Series{}
	var order []string
	for _, b := range r.Blocks {
		for _, row := range b.Rows {
			if row.Error != "" {
				continue
			}
			s := series[row.Agent]
			if s == nil {
				s = &[3]Series{{Name: row.Agent}, {Name: row.Agent}, {Name: row.Agent}}
				series[row.Agent] = s
				order = append(order, row.Agent)
			}
			x := float64(b.Flows)
			s[0].X, s[0].Y = append(s[0].X, x), append(s[0].Y, row.Ratio.Median)
			if row.Counted != nil {
				s[1].X, s[1].Y = append(s[1].X, x), append(s[1].Y, row.Counted.Median)
			}
			if row.AgentCPU != nil {
				c := row.AgentCPU.Median
				if row.DataPlaneCPU != nil {
					c += row.DataPlaneCPU.Median
				}
				if c > 0 {
					s[2].X, s[2].Y = append(s[2].X, x), append(s[2].Y, c)
				}
			}
		}
	}
	for _, name := range order {
		s := series[name]
		rate.Series = append(rate.Series, s[0])
		if len(s[1].X) > 0 {
			counted.Series = append(counted.Series, s[1])
		}
		if len(s[2].X) > 0 {
			cpu.Series = append(cpu.Series, s[2])
		}
	}
	return []Plot{rate, counted, cpu}
}
