package hostwire

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// UnderlaySpec is the kernel side of a host's underlay with the userspace (netdev)
// datapath. Userspace tunnels leave through an OVS bridge holding the NIC, so the
// host's tunnel IP must sit on that bridge's internal interface: then the kernel route
// to the remote hosts points at an OVS device. The bridge and the NIC's port on it are
// OVSDB's business (ovsdb.Client.EnsureUnderlay); this is the rest.
type UnderlaySpec struct {
	// NIC is the underlay device, already a port of Bridge. It is set up with ARP off:
	// it is still a kernel netdev, and the kernel would otherwise answer OVS's ARP
	// requests with its own MAC. It loses CIDR's address if it carried it.
	NIC string
	// Bridge's internal interface gets CIDR and is set up.
	Bridge string
	// CIDR is the host's tunnel IP with its prefix, e.g. 172.31.0.1/24.
	CIDR string
}

// underlayWait bounds how long EnsureUnderlay waits for vswitchd to create the
// bridge's internal interface, which it does asynchronously to the OVSDB change.
const underlayWait = 10 * time.Second

// EnsureUnderlay sets the NIC up with ARP off, moves CIDR from the NIC (if there)
// to the bridge's internal interface and sets that up. It is idempotent: once in
// place it changes no link. Call it after the bridge is in OVSDB; it waits for the
// internal interface until ctx ends, at most 10 s.
func (h *Host) EnsureUnderlay(ctx context.Context, spec UnderlaySpec) error {
	if spec.NIC == "" || spec.Bridge == "" {
		return fmt.Errorf("underlay: NIC %q and bridge %q must be set", spec.NIC, spec.Bridge)
	}
	pfx, err := netip.ParsePrefix(spec.CIDR)
	if err != nil || !pfx.Addr().Is4() {
		return fmt.Errorf("underlay: CIDR %q: want an IPv4 address with prefix, e.g. 172.31.0.1/24", spec.CIDR)
	}
	ipnet := &net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(pfx.Bits(), 32)}
	if err := h.Do(func() error { return ensureUnderlayNIC(spec.NIC, ipnet) }); err != nil {
		return fmt.Errorf("underlay: %w", err)
	}
	// Poll outside Do: the namespace thread serves every other operation meanwhile.
	deadline := time.Now().Add(underlayWait)
	for {
		found := false
		err := h.Do(func() error {
			br, err := linkByName(spec.Bridge)
			if err != nil || br == nil {
				return err
			}
			found = true
			return ensureAddressUp(br, ipnet)
		})
		if err != nil {
			return fmt.Errorf("underlay: %s on %s: %w", spec.CIDR, spec.Bridge, err)
		}
		if found {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("underlay: internal interface %s did not appear within %s", spec.Bridge, underlayWait)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("underlay: internal interface %s: %w", spec.Bridge, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ensureUnderlayNIC runs on the namespace thread.
func ensureUnderlayNIC(name string, ipnet *net.IPNet) error {
	nic, err := linkByName(name)
	if err != nil {
		return err
	}
	if nic == nil {
		return fmt.Errorf("NIC %s: no such device", name)
	}
	if nic.Attrs().RawFlags&unix.IFF_UP == 0 {
		if err := netlink.LinkSetUp(nic); err != nil {
			return fmt.Errorf("NIC %s up: %w", name, err)
		}
	}
	if nic.Attrs().RawFlags&unix.IFF_NOARP == 0 {
		if err := netlink.LinkSetARPOff(nic); err != nil {
			return fmt.Errorf("NIC %s arp off: %w", name, err)
		}
	}
	addrs, err := netlink.AddrList(nic, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", name, err)
	}
	for _, a := range addrs {
		if a.IP.Equal(ipnet.IP) {
			if err := netlink.AddrDel(nic, &a); err != nil {
				return fmt.Errorf("move %s off %s: %w", ipnet, name, err)
			}
		}
	}
	return nil
}

// ensureAddressUp gives l the address ipnet (unless it has it with that prefix) and
// sets it up; it runs on the namespace thread.
func ensureAddressUp(l netlink.Link, ipnet *net.IPNet) error {
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", l.Attrs().Name, err)
	}
	have := false
	for _, a := range addrs {
		if a.IP.Equal(ipnet.IP) && a.Mask.String() == ipnet.Mask.String() {
			have = true
		}
	}
	if !have {
		if err := netlink.AddrReplace(l, &netlink.Addr{IPNet: ipnet}); err != nil {
			return err
		}
	}
	if l.Attrs().RawFlags&unix.IFF_UP == 0 {
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("%s up: %w", l.Attrs().Name, err)
		}
	}
	return nil
}
