package ovsdb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// UnderlaySpec describes the underlay of a host using the userspace (netdev)
// datapath: userspace tunnels leave through an OVS bridge holding the NIC, and the
// host's tunnel IP must sit on that bridge's internal interface so the kernel route
// to the remotes points at an OVS device (ovs-lab-facts.md §2).
type UnderlaySpec struct {
	// Bridge defaults to br-phy.
	Bridge string
	// NIC is the underlay device; it becomes a port of Bridge and loses the tunnel
	// IP if it carried it.
	NIC string
	// CIDR is the host's tunnel IP with its prefix, e.g. 172.31.0.1/24.
	CIDR string
	// DatapathID optionally fixes the bridge's datapath-id.
	DatapathID string
	// Netns names (as `ip netns` does) the network namespace that holds the NIC and
	// where vswitchd runs. Empty means the caller's own namespace, which is the
	// normal case: lanesd runs in the host namespace. Tests running several hosts
	// from one process pass the host's namespace.
	Netns string
}

// EnsureUnderlay sets up the underlay in one OVSDB transaction plus netlink:
//   - Bridge: netdev datapath, fail_mode=standalone. Standalone makes OVS install
//     and keep a priority-0 NORMAL flow by itself, so no controller is needed;
//     secure with no flows breaks the tunnels.
//   - the NIC as a port of Bridge, up, with ARP off: it is still a kernel netdev,
//     and the kernel would otherwise answer OVS's ARP requests with its own MAC.
//   - CIDR on Bridge's internal interface (moved off the NIC if it was there), up.
//
// It is idempotent: once in place it sends no OVSDB transaction and changes no link.
func (c *Client) EnsureUnderlay(ctx context.Context, spec UnderlaySpec) error {
	if spec.Bridge == "" {
		spec.Bridge = BrPhy
	}
	if spec.NIC == "" {
		return fmt.Errorf("underlay: empty NIC")
	}
	pfx, err := netip.ParsePrefix(spec.CIDR)
	if err != nil || !pfx.Addr().Is4() {
		return fmt.Errorf("underlay: CIDR %q: want an IPv4 address with prefix, e.g. 172.31.0.1/24", spec.CIDR)
	}
	h, closeH, err := netlinkHandle(spec.Netns)
	if err != nil {
		return fmt.Errorf("underlay: %w", err)
	}
	defer closeH()
	if _, err := h.LinkByName(spec.NIC); err != nil {
		return fmt.Errorf("underlay: NIC %s: %w", spec.NIC, err)
	}

	b := c.NewBatch().
		EnsureBridge(BridgeSpec{Name: spec.Bridge, DatapathType: DatapathNetdev, DatapathID: spec.DatapathID, FailMode: FailStandalone})
	b.add(spec.NIC, func(p *planner) error {
		return p.ensurePort(&portSpec{bridge: spec.Bridge, name: spec.NIC, ifType: "", readback: true})
	})
	b.add("", func(p *planner) error {
		// The bridge's internal port: its ofport means vswitchd has created the tap.
		p.readback = append(p.readback, spec.Bridge)
		return nil
	})
	if _, err := b.Commit(ctx); err != nil {
		return fmt.Errorf("underlay %s: %w", spec.Bridge, err)
	}

	nic, err := h.LinkByName(spec.NIC)
	if err != nil {
		return fmt.Errorf("underlay: NIC %s: %w", spec.NIC, err)
	}
	if nic.Attrs().RawFlags&netUpFlag == 0 {
		if err := h.LinkSetUp(nic); err != nil {
			return fmt.Errorf("underlay: NIC %s up: %w", spec.NIC, err)
		}
	}
	if nic.Attrs().RawFlags&noARPFlag == 0 {
		if err := h.LinkSetARPOff(nic); err != nil {
			return fmt.Errorf("underlay: NIC %s arp off: %w", spec.NIC, err)
		}
	}
	ipnet := &net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(pfx.Bits(), 32)}
	if addrs, err := h.AddrList(nic, netlink.FAMILY_V4); err == nil {
		for _, a := range addrs {
			if a.IP.Equal(ipnet.IP) {
				if err := h.AddrDel(nic, &a); err != nil {
					return fmt.Errorf("underlay: move %s off %s: %w", spec.CIDR, spec.NIC, err)
				}
			}
		}
	}

	// vswitchd creates the internal tap asynchronously to the DB change; the ofport
	// read-back above already waited for it, so this normally succeeds at once.
	var br netlink.Link
	deadline := time.Now().Add(10 * time.Second)
	for {
		br, err = h.LinkByName(spec.Bridge)
		if err == nil {
			break
		}
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) || time.Now().After(deadline) {
			return fmt.Errorf("underlay: internal interface %s: %w", spec.Bridge, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("underlay: internal interface %s: %w", spec.Bridge, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	have := false
	if addrs, err := h.AddrList(br, netlink.FAMILY_V4); err == nil {
		for _, a := range addrs {
			if a.IP.Equal(ipnet.IP) && a.Mask.String() == ipnet.Mask.String() {
				have = true
			}
		}
	}
	if !have {
		if err := h.AddrReplace(br, &netlink.Addr{IPNet: ipnet}); err != nil {
			return fmt.Errorf("underlay: %s on %s: %w", spec.CIDR, spec.Bridge, err)
		}
	}
	if br.Attrs().RawFlags&netUpFlag == 0 {
		if err := h.LinkSetUp(br); err != nil {
			return fmt.Errorf("underlay: %s up: %w", spec.Bridge, err)
		}
	}
	return nil
}

const (
	netUpFlag = 0x1  // IFF_UP
	noARPFlag = 0x80 // IFF_NOARP
)

// netlinkHandle returns a netlink handle for the named namespace ("" = ours).
// Handle-based calls act in the handle's namespace without switching threads.
func netlinkHandle(ns string) (*netlink.Handle, func(), error) {
	if ns == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, nil, fmt.Errorf("netlink: %w", err)
		}
		return h, h.Close, nil
	}
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		return nil, nil, fmt.Errorf("netns %s: %w", ns, err)
	}
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		nsh.Close()
		return nil, nil, fmt.Errorf("netlink in netns %s: %w", ns, err)
	}
	return h, func() { h.Close(); nsh.Close() }, nil
}
