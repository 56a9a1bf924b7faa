package hostwire

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DisableTxChecksum turns off dev's transmit checksum offload (ethtool -K dev tx off)
// in the caller's network namespace. A veth hands its peer packets whose checksum is
// left to the hardware; the userspace datapath reads them from a raw socket and sends
// them on unfinished, so the receiver drops every TCP segment. The router's devices and
// any veth that feeds a router through OVS need it.
func DisableTxChecksum(dev string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	const ethtoolSTXCSUM = 0x17
	// On the heap, so it cannot move while the kernel holds its address.
	ev := &struct{ cmd, data uint32 }{ethtoolSTXCSUM, 0}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data uintptr
		_    [16]byte
	}
	copy(ifr.name[:], dev)
	ifr.data = uintptr(unsafe.Pointer(ev))
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); e != 0 {
		return fmt.Errorf("%s: disable tx checksum offload: %w", dev, e)
	}
	runtime.KeepAlive(ev)
	return nil
}
