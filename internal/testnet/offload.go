package testnet

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Offloads selects segmentation offloads of one interface.
type Offloads struct {
	TSO bool // tcp-segmentation-offload (all TSO variants)
	GSO bool // generic-segmentation-offload
	GRO bool // generic-receive-offload (on veth this also switches the rx side to NAPI)
}

// SetOffloads switches TSO, GSO and GRO of interface ifname in namespace ns
// all on or all off, like `ethtool -K ifname tso on gso on gro on`.
func (p *Pair) SetOffloads(ns netns.NsHandle, ifname string, on bool) error {
	return SetOffloads(ns, ifname, Offloads{TSO: on, GSO: on, GRO: on})
}

// SetOffloads sets TSO, GSO and GRO of ifname in ns individually, using the
// legacy SIOCETHTOOL commands (ETHTOOL_STSO/SGSO/SGRO), which the kernel maps
// onto the netdev feature bits.
func SetOffloads(ns netns.NsHandle, ifname string, o Offloads) error {
	return Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, c := range []struct {
			name string
			cmd  uint32
			on   bool
		}{
			{"tso", unix.ETHTOOL_STSO, o.TSO},
			{"gso", unix.ETHTOOL_SGSO, o.GSO},
			{"gro", unix.ETHTOOL_SGRO, o.GRO},
		} {
			v := ethtoolValue{Cmd: c.cmd}
			if c.on {
				v.Data = 1
			}
			if err := ethtoolIoctl(fd, ifname, &v); err != nil {
				return fmt.Errorf("ethtool %s %s %v: %w", ifname, c.name, c.on, err)
			}
		}
		return nil
	})
}

// GetOffloads reads TSO, GSO and GRO of ifname in ns.
func GetOffloads(ns netns.NsHandle, ifname string) (Offloads, error) {
	var o Offloads
	err := Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, c := range []struct {
			cmd uint32
			dst *bool
		}{
			{unix.ETHTOOL_GTSO, &o.TSO},
			{unix.ETHTOOL_GGSO, &o.GSO},
			{unix.ETHTOOL_GGRO, &o.GRO},
		} {
			v := ethtoolValue{Cmd: c.cmd}
			if err := ethtoolIoctl(fd, ifname, &v); err != nil {
				return fmt.Errorf("ethtool get %#x on %s: %w", c.cmd, ifname, err)
			}
			*c.dst = v.Data != 0
		}
		return nil
	})
	return o, err
}

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	Cmd  uint32
	Data uint32
}

// ifreqData is struct ifreq with ifr_data set (40 bytes on 64-bit Linux).
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

func ethtoolIoctl(fd int, ifname string, v *ethtoolValue) error {
	if len(ifname) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q too long", ifname)
	}
	var ifr ifreqData
	copy(ifr.name[:], ifname)
	ifr.data = unsafe.Pointer(v)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(v)
	if errno != 0 {
		return errno
	}
	return nil
}
