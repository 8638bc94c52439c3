package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The end-to-end generator: an XDP program run with BPF_PROG_TEST_RUN in
// live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES) inside side A's namespace.
// Each run of the program takes the template frame, writes the UDP source
// port from a sequence number (base + seq&mask: 1 flow with mask 0, 65536
// with mask 0xffff) and redirects the frame to veth A, whose
// ndo_xdp_xmit puts it on veth B's receive ring; B's NAPI then runs B's XDP
// program (the agent's, or a plain XDP_PASS one: a veth only accepts
// redirected frames while its peer has an XDP program) and the stack.
//
// The kernel runs the program, transmits and (at the end of each batch of
// 64) flushes to the veth, and B's NAPI runs in the softirq of the same CPU
// when the batch ends: the generator and the receive path share one CPU,
// so any cost an agent adds in the kernel lowers the rate.

// Layout of the generator's state (one array slot).
const (
	genSeq     = 0  // u64 sequence number, incremented per frame
	genMask    = 8  // u64 mask applied to the sequence number
	genBase    = 16 // u64 first source port
	genIfindex = 24 // u32 where frames are redirected
	genSize    = 32
)

// udpSrcOff is the UDP source port's offset in the template frame
// (Ethernet 14 + IPv4 20).
const udpSrcOff = 14 + 20

// frameLen is the generated frame's length (without FCS): the minimum
// Ethernet frame, 46 IP bytes.
const frameLen = 60

type generator struct {
	state *ebpf.Map
	prog  *ebpf.Program // the generator
	pass  *ebpf.Program // XDP_PASS, for B when no agent attaches its own
}

func newGenerator() (*generator, error) {
	state, err := ebpf.NewMap(&ebpf.MapSpec{
		Name: "xbench_gen", Type: ebpf.Array, KeySize: 4, ValueSize: genSize, MaxEntries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("generator state map: %w", err)
	}
	insns := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // data
		asm.LoadMem(asm.R3, asm.R1, 4, asm.Word), // data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, udpSrcOff+2),
		asm.JGT.Reg(asm.R4, asm.R3, "drop"),
		asm.LoadMapValue(asm.R7, state.FD(), 0),
		asm.LoadMem(asm.R5, asm.R7, genSeq, asm.DWord),
		asm.Mov.Reg(asm.R8, asm.R5),
		asm.Add.Imm(asm.R8, 1),
		asm.StoreMem(asm.R7, genSeq, asm.R8, asm.DWord),
		asm.LoadMem(asm.R8, asm.R7, genMask, asm.DWord),
		asm.And.Reg(asm.R5, asm.R8),
		asm.LoadMem(asm.R8, asm.R7, genBase, asm.DWord),
		asm.Add.Reg(asm.R5, asm.R8),
		asm.HostTo(asm.BE, asm.R5, asm.Half),
		asm.StoreMem(asm.R2, udpSrcOff, asm.R5, asm.Half),
		asm.LoadMem(asm.R1, asm.R7, genIfindex, asm.Word),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRedirect.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, 1).WithSymbol("drop"), // XDP_DROP
		asm.Return(),
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "xbench_gen", Type: ebpf.XDP, License: "GPL", Instructions: insns,
	})
	if err != nil {
		state.Close()
		return nil, fmt.Errorf("generator program: %w", err)
	}
	pass, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "xbench_pass", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}, // XDP_PASS
	})
	if err != nil {
		prog.Close()
		state.Close()
		return nil, fmt.Errorf("XDP_PASS program: %w", err)
	}
	return &generator{state: state, prog: prog, pass: pass}, nil
}

func (g *generator) Close() {
	g.pass.Close()
	g.prog.Close()
	g.state.Close()
}

// xdpMD is struct xdp_md, the test run's context.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// genFrame is the template: IPv4 UDP from src to dst (ports filled in by
// the program and by dstPort), UDP checksum 0 (none), to dstMAC.
func genFrame(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, dstPort uint16) []byte {
	f := make([]byte, frameLen)
	copy(f[0:6], dstMAC)
	copy(f[6:12], srcMAC)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], frameLen-14)
	ip[8] = 64
	ip[9] = unix.IPPROTO_UDP
	s, d := src.As4(), dst.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := f[34:]
	binary.BigEndian.PutUint16(udp[2:], dstPort)
	binary.BigEndian.PutUint16(udp[4:], frameLen-34)
	return f
}

// send pushes frames of the template out of ifindex, source ports from
// basePort on (flows of them, a power of two), from a thread locked into ns
// and bound to cpu: chunks of chunk frames until d has passed (at least one
// chunk). It returns the frames sent (as the program counted them) and the
// wall time.
func (g *generator) send(ns netns.NsHandle, ifindex, cpu int, frame []byte, basePort uint16, flows int, d time.Duration, chunk uint32) (uint64, time.Duration, error) {
	if flows < 1 || flows&(flows-1) != 0 || int(basePort)+flows > 1<<16 {
		return 0, 0, fmt.Errorf("generator: %d flows from port %d", flows, basePort)
	}
	var st [genSize]byte
	binary.NativeEndian.PutUint64(st[genMask:], uint64(flows-1))
	binary.NativeEndian.PutUint64(st[genBase:], uint64(basePort))
	binary.NativeEndian.PutUint32(st[genIfindex:], uint32(ifindex))
	if err := g.state.Put(uint32(0), st[:]); err != nil {
		return 0, 0, fmt.Errorf("generator state: %w", err)
	}
	type result struct {
		n   uint64
		d   time.Duration
		err error
	}
	done := make(chan result, 1)
	// A goroutine of its own: its thread is locked, moved into ns and
	// pinned to cpu, and dies with the goroutine (never unlocked).
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			done <- result{err: fmt.Errorf("setns: %w", err)}
			return
		}
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			done <- result{err: fmt.Errorf("sched_setaffinity: %w", err)}
			return
		}
		opts := &ebpf.RunOptions{
			Data:    frame,
			Repeat:  chunk,
			Flags:   unix.BPF_F_TEST_XDP_LIVE_FRAMES,
			Context: xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ifindex)},
		}
		var r result
		start := time.Now()
		for r.n == 0 || time.Since(start) < d {
			ret, err := g.prog.Run(opts)
			if err == nil && ret != 0 {
				err = fmt.Errorf("test run returned %d", ret)
			}
			if err != nil && r.n == 0 && errors.Is(err, unix.EPERM) {
				// A kernel that refuses live frames to root (seen on
				// 6.18.44): send through a packet socket instead.
				r.n, r.d, r.err = sendPacketSocket(ifindex, frame, basePort, flows, d, chunk)
				done <- r
				return
			}
			if err != nil {
				if errors.Is(err, unix.EINVAL) && r.n == 0 {
					err = fmt.Errorf("%w: %w", errNoLiveFrames, err)
				}
				r.err = err
				break
			}
			r.n += uint64(chunk)
		}
		r.d = time.Since(start)
		// The frames the program made: more than the chunks asked for
		// when a test run was interrupted (a signal) and started again.
		var st [genSize]byte
		if err := g.state.Lookup(uint32(0), st[:]); err != nil && r.err == nil {
			r.err = fmt.Errorf("generator state: %w", err)
		}
		r.n = binary.NativeEndian.Uint64(st[genSeq:])
		done <- r
	}()
	r := <-done
	if r.err != nil {
		return r.n, r.d, fmt.Errorf("generator: %w", r.err)
	}
	return r.n, r.d, nil
}

var errNoLiveFrames = errors.New("BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES refused (needs kernel 5.18 or later)")

// sendPacketSocket is the generator's fallback where the kernel refuses
// live frames: the same frames (source ports basePort + seq&(flows-1)),
// written to a packet socket bound to ifindex by the calling thread (locked
// into the namespace and bound to the CPU), in chunks of chunk frames until
// d has passed. The frames reach veth B through veth A's transmit path
// rather than XDP redirect, so the rates it measures are lower than with
// live frames; agents are still compared with the no-agent run on the
// same path. It returns the frames sent and the wall time.
func sendPacketSocket(ifindex int, frame []byte, basePort uint16, flows int, d time.Duration, chunk uint32) (uint64, time.Duration, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Ifindex: ifindex, Halen: 6}
	copy(to.Addr[:], frame[0:6])
	f := append([]byte(nil), frame...)
	mask := uint64(flows - 1)
	var n uint64
	start := time.Now()
	for n == 0 || time.Since(start) < d {
		for i := uint32(0); i < chunk; i++ {
			binary.BigEndian.PutUint16(f[udpSrcOff:], basePort+uint16(n&mask))
			for {
				err := unix.Sendto(fd, f, 0, to)
				if err == nil {
					break
				}
				if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
					continue // the veth's queue is full: retry this frame
				}
				return n, time.Since(start), fmt.Errorf("packet socket send: %w", err)
			}
			n++
		}
	}
	return n, time.Since(start), nil
}
