package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// clkTck is USER_HZ, the unit of /proc's tick counts (100 on Linux).
const clkTck = 100

// busyCPU is the time all CPUs together spent not idle since boot, from
// /proc/stat (user, nice, system, irq, softirq and steal; guest time is
// already in user).
func busyCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var busy uint64
	for i, s := range f[1:9] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		busy += v
	}
	return time.Duration(busy) * time.Second / clkTck, nil
}

// procStat is what treeCPU needs of /proc/PID/stat.
type procStat struct {
	ppid           int
	cutime, cstime uint64 // ticks of children it waited for
}

func readProcStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields after it start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): ppid is field 4, cutime 16, cstime 17.
	if len(f) < 15 {
		return procStat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	cu, _ := strconv.ParseUint(f[13], 10, 64)
	cs, _ := strconv.ParseUint(f[14], 10, 64)
	return procStat{ppid: ppid, cutime: cu, cstime: cs}, true
}

// threadsCPU sums the time on CPU of pid's live threads, in ns, from
// /proc/PID/task/TID/schedstat (precise, unlike /proc/PID/stat's ticks).
func threadsCPU(pid int) time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseUint(f[0], 10, 64); err == nil {
			sum += time.Duration(v)
		}
	}
	return sum
}

// treeCPU is the CPU time (user and system) used so far by process root
// and its descendants: their live threads' time plus what the children
// they reaped used.
func treeCPU(root int) time.Duration {
	children := map[int][]int{}
	stats := map[int]procStat{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readProcStat(pid); ok {
			stats[pid] = st
			children[st.ppid] = append(children[st.ppid], pid)
		}
	}
	var sum time.Duration
	var walk func(pid int)
	walk = func(pid int) {
		st, ok := stats[pid]
		if !ok {
			return
		}
		sum += threadsCPU(pid)
		sum += time.Duration(st.cutime+st.cstime) * time.Second / clkTck
		for _, c := range children[pid] {
			walk(c)
		}
	}
	walk(root)
	return sum
}

// packetSocketOn reports whether a packet socket bound to ifindex exists in
// the network namespace of process pid (/proc/PID/net/packet).
func packetSocketOn(pid, ifindex int) bool {
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/packet", pid))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header: sk RefCnt Type Proto Iface R Rmem User Inode
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 5 && fs[4] == strconv.Itoa(ifindex) {
			return true
		}
	}
	return false
}

// udpRcvbufErrors is the UDP datagrams dropped for a full receive buffer
// in the calling thread's network namespace (/proc/thread-self/net/snmp).
func udpRcvbufErrors() (uint64, error) {
	b, err := os.ReadFile("/proc/thread-self/net/snmp")
	if err != nil {
		return 0, err
	}
	var hdr []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if hdr == nil {
			hdr = f
			continue
		}
		for i, h := range hdr {
			if h == "RcvbufErrors" && i < len(f) {
				return strconv.ParseUint(f[i], 10, 64)
			}
		}
	}
	return 0, errors.New("/proc/net/snmp: no Udp RcvbufErrors")
}

// forceRcvBuf sets SO_RCVBUFFORCE on this process's UDP socket bound to
// port in the calling thread's network namespace, found by its inode
// (/proc/thread-self/net/udp, /proc/self/fd). The collector asks for 4 MiB,
// which net.core.rmem_max caps (208 KiB on a stock kernel); agents that
// export every flow in one burst at exit would overflow it.
func forceRcvBuf(port, size int) error {
	b, err := os.ReadFile("/proc/thread-self/net/udp")
	if err != nil {
		return err
	}
	want := fmt.Sprintf(":%04X", port)
	inode := ""
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) > 9 && strings.HasSuffix(f[1], want) {
			inode = f[9]
			break
		}
	}
	if inode == "" {
		return fmt.Errorf("no UDP socket on port %d", port)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, d := range fds {
		l, err := os.Readlink("/proc/self/fd/" + d.Name())
		if err != nil || l != "socket:["+inode+"]" {
			continue
		}
		fd, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
	}
	return fmt.Errorf("UDP socket on port %d (inode %s) is not ours", port, inode)
}
