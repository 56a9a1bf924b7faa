package hostwire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
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
	// requests with its own MAC. It loses CIDR's address if it carried it. With an
	// IPv6 CIDR its IPv6 is also turned off, ND's counterpart of ARP off: the kernel
	// would otherwise be a second IPv6 node behind the NIC's MAC (a link-local
	// address, router and listener solicitations, router advertisements taken on a
	// device whose traffic OVS owns).
	NIC string
	// Bridge's internal interface gets CIDR and is set up. An IPv6 address goes on
	// without duplicate address detection: the tunnels need it at once, and a
	// duplicate tunnel IP is an operator's error that DAD would only turn into an
	// address the kernel never uses. IPv6 is turned on there if the namespace's
	// default had it off.
	Bridge string
	// CIDR is the host's tunnel IP with its prefix, e.g. 172.31.0.1/24 or
	// fd00:31::1/64.
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
	if err != nil || pfx.Addr().Is4In6() || pfx.Addr().IsLinkLocalUnicast() {
		return fmt.Errorf("underlay: CIDR %q: want an IPv4 or IPv6 (not link-local) address with prefix, e.g. 172.31.0.1/24 or fd00:31::1/64", spec.CIDR)
	}
	ipnet := &net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen())}
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

// family is the netlink address family of ip.
func family(ip net.IP) int {
	if ip.To4() != nil {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
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
	fam := family(ipnet.IP)
	addrs, err := netlink.AddrList(nic, fam)
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
	if fam == netlink.FAMILY_V6 {
		if err := setIPv6(name, false); err != nil {
			return fmt.Errorf("NIC %s: %w", name, err)
		}
	}
	return nil
}

// setIPv6 turns IPv6 on or off on a device (its disable_ipv6 sysctl); it runs on the
// namespace thread.
func setIPv6(dev string, on bool) error {
	v := "1"
	if on {
		v = "0"
	}
	p := "/proc/sys/net/ipv6/conf/" + dev + "/disable_ipv6"
	if err := writeSysctl(p, v); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("this namespace has no IPv6 (%s is missing): %w", p, err)
		}
		return fmt.Errorf("set %s=%s: %w", p, v, err)
	}
	return nil
}

// ensureAddressUp gives l the address ipnet (unless it has it with that prefix) and
// sets it up; it runs on the namespace thread.
func ensureAddressUp(l netlink.Link, ipnet *net.IPNet) error {
	fam := family(ipnet.IP)
	if fam == netlink.FAMILY_V6 {
		if err := setIPv6(l.Attrs().Name, true); err != nil {
			return fmt.Errorf("%s: %w", l.Attrs().Name, err)
		}
	}
	addrs, err := netlink.AddrList(l, fam)
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
		addr := &netlink.Addr{IPNet: ipnet}
		if fam == netlink.FAMILY_V6 {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(l, addr); err != nil {
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
