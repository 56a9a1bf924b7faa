// Package fakevm is a fake hypervisor: it opens a port's host-side tap (as qemu would,
// -netdev tap,ifname=tapX) and a tap named eth0 inside a "VM" network namespace, and
// copies Ethernet frames between them, so that namespace's kernel acts as the guest.
package fakevm

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/lanes-net/lanes/internal/nsexec"
)

// Config describes one fake VM.
type Config struct {
	HostNetns string // namespace holding the tap: a name under /var/run/netns or a path; "" = current
	Tap       string // the persistent host-side tap, e.g. tap0d8a43d2-3a
	VMNetns   string // the guest's namespace name; created if missing
	MAC       string // guest eth0 MAC
	IP        string // guest address with prefix, e.g. 10.0.0.5/24; "" leaves eth0 without (for a DHCP client)
	GW        string // optional default gateway
	MTU       int    // 0 leaves the default
}

// vnetHdrLen is sizeof(struct virtio_net_hdr): the host tap is opened with
// IFF_VNET_HDR like qemu does, and without offloads every header is all zero.
const vnetHdrLen = 10

// VM is a running fake VM.
type VM struct {
	cfg       Config
	host, vm  *os.File
	wg        sync.WaitGroup
	closeOnce sync.Once
	mu        sync.Mutex
	err       error
}

// EnsureNetns creates the named namespace (like `ip netns add`) unless it exists.
func EnsureNetns(name string) error {
	if _, err := os.Stat(nsexec.Path(name)); err == nil {
		return nil
	}
	return nsexec.NewNamed(name)
}

// DeleteNetns removes a named namespace; one already gone is fine.
func DeleteNetns(name string) error {
	if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	return nil
}

// openTap attaches to (or creates) a tap in namespace nsPath ("" = ours). A tun
// device belongs to the namespace of the thread that opens /dev/net/tun.
func openTap(nsPath, name string, flags uint16) (*os.File, error) {
	var f *os.File
	open := func() error {
		var err error
		f, err = openTapHere(name, flags)
		return err
	}
	var err error
	if nsPath == "" {
		err = open()
	} else {
		err = nsexec.DoPath(nsPath, open)
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, fmt.Errorf("open tap %s: %w", name, err)
	}
	return f, nil
}

// openTapHere opens the tap in the calling thread's namespace.
func openTapHere(name string, flags uint16) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var req [unix.IFNAMSIZ + 64]byte
	copy(req[:unix.IFNAMSIZ-1], name)
	*(*uint16)(unsafe.Pointer(&req[unix.IFNAMSIZ])) = flags
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req[0]))); e != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF: %w", e)
	}
	// Non-blocking so the runtime poller owns it and Close interrupts a pending Read.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// Start creates the VM namespace if needed, eth0 inside it, configures eth0, attaches
// to the host tap and starts copying frames. It returns once eth0 is up and attached.
func Start(cfg Config) (*VM, error) {
	if cfg.Tap == "" || cfg.VMNetns == "" || cfg.MAC == "" {
		return nil, errors.New("fakevm: tap, VM netns and MAC are required")
	}
	mac, err := net.ParseMAC(cfg.MAC)
	if err != nil {
		return nil, fmt.Errorf("fakevm: MAC %q: %w", cfg.MAC, err)
	}
	var addr *netlink.Addr
	if cfg.IP != "" {
		if addr, err = netlink.ParseAddr(cfg.IP); err != nil {
			return nil, fmt.Errorf("fakevm: IP %q (want address/prefix): %w", cfg.IP, err)
		}
	}
	var gw net.IP
	if cfg.GW != "" {
		if gw = net.ParseIP(cfg.GW); gw == nil {
			return nil, fmt.Errorf("fakevm: gateway %q: not an IP address", cfg.GW)
		}
	}
	if err := EnsureNetns(cfg.VMNetns); err != nil {
		return nil, err
	}
	hostNs := ""
	if cfg.HostNetns != "" {
		hostNs = nsexec.Path(cfg.HostNetns)
	}
	v := &VM{cfg: cfg}
	if v.host, err = openTap(hostNs, cfg.Tap, unix.IFF_TAP|unix.IFF_NO_PI|unix.IFF_VNET_HDR); err != nil {
		return nil, err
	}
	if v.vm, err = openTap(nsexec.Path(cfg.VMNetns), "eth0", unix.IFF_TAP|unix.IFF_NO_PI); err != nil {
		v.host.Close()
		return nil, err
	}
	if err := configure(nsexec.Path(cfg.VMNetns), mac, addr, gw, cfg.MTU); err != nil {
		v.Close()
		return nil, err
	}
	v.wg.Add(2)
	go v.copy(v.host, v.vm, true)
	go v.copy(v.vm, v.host, false)
	return v, nil
}

func configure(nsPath string, mac net.HardwareAddr, addr *netlink.Addr, gw net.IP, mtu int) error {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", nsPath, err)
	}
	defer h.Close()
	if lo, err := h.LinkByName("lo"); err == nil {
		_ = h.LinkSetUp(lo)
	}
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("eth0 in %s: %w", nsPath, err)
	}
	if err := h.LinkSetHardwareAddr(eth, mac); err != nil {
		return fmt.Errorf("set eth0 MAC: %w", err)
	}
	if mtu > 0 {
		if err := h.LinkSetMTU(eth, mtu); err != nil {
			return fmt.Errorf("set eth0 MTU: %w", err)
		}
	}
	if addr != nil {
		if err := h.AddrReplace(eth, addr); err != nil {
			return fmt.Errorf("set eth0 address: %w", err)
		}
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("set eth0 up: %w", err)
	}
	if gw != nil {
		r := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw}
		if err := h.RouteReplace(r); err != nil {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
	}
	return nil
}

// copy moves frames from src to dst; toHost adds the (empty) virtio-net header the
// host tap expects, otherwise it is stripped.
func (v *VM) copy(dst, src *os.File, toHost bool) {
	defer v.wg.Done()
	buf := make([]byte, vnetHdrLen+65536)
	for {
		var n int
		var err error
		if toHost {
			clear(buf[:vnetHdrLen])
			n, err = src.Read(buf[vnetHdrLen:])
			n += vnetHdrLen
		} else {
			n, err = src.Read(buf)
		}
		if err != nil {
			v.fail(err)
			v.closeFiles() // the other direction is useless without this one
			return
		}
		out := buf[:n]
		if !toHost {
			if n <= vnetHdrLen {
				continue
			}
			out = buf[vnetHdrLen:n]
		}
		// A write error (e.g. the peer is down for a moment) loses one frame, as a
		// real NIC would; only a closed file ends the loop.
		if _, err := dst.Write(out); err != nil && errors.Is(err, os.ErrClosed) {
			v.fail(err)
			return
		}
	}
}

func (v *VM) fail(err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.err == nil && !errors.Is(err, os.ErrClosed) {
		v.err = err
	}
}

// Close detaches from both taps; eth0 disappears with its file. The VM namespace is
// kept (DeleteNetns removes it).
func (v *VM) Close() error {
	v.closeFiles()
	v.wg.Wait()
	return v.Err()
}

func (v *VM) closeFiles() {
	v.closeOnce.Do(func() {
		v.host.Close()
		v.vm.Close()
	})
}

// Err is the error that stopped the frame copy, if any.
func (v *VM) Err() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.err
}

// Wait blocks until the frame copy stops (Close, or a tap vanished).
func (v *VM) Wait() error {
	v.wg.Wait()
	return v.Err()
}

// OpenHostTap attaches to a port's host-side tap in namespace hostNetns (a name; ""
// = current) the way qemu does, for a test that plays the guest itself: every frame
// read or written starts with an all-zero virtio-net header of VnetHdrLen bytes.
func OpenHostTap(hostNetns, tap string) (*os.File, error) {
	ns := ""
	if hostNetns != "" {
		ns = nsexec.Path(hostNetns)
	}
	return openTap(ns, tap, unix.IFF_TAP|unix.IFF_NO_PI|unix.IFF_VNET_HDR)
}

// VnetHdrLen is the virtio-net header in front of every frame of OpenHostTap.
const VnetHdrLen = vnetHdrLen
