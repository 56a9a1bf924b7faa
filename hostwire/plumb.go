package hostwire

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/lanes-net/lanes/api"
)

// PortSpec is what the plumbing of one port needs.
type PortSpec struct {
	ID  string // port UUID; device names use its first 11 characters
	MAC string // the VM's MAC; the tap gets it with the first octet fe (as libvirt does)
	MTU int
	// TapOwner and TapGroup let an unprivileged qemu open the tap with
	// -netdev tap,ifname=tapX,script=no,downscript=no.
	TapOwner, TapGroup uint32
}

// Devices are the kernel device names of one port.
type Devices struct{ Tap, Qbr, Qvb, Qvo string }

// DevicesOf names the devices of a port.
func DevicesOf(portID string) Devices {
	return Devices{Tap: api.TapName(portID), Qbr: api.QbrName(portID), Qvb: api.QvbName(portID), Qvo: api.QvoName(portID)}
}

// tapMAC is the host side MAC of a tap: the VM's MAC with the first octet fe, so the
// bridge never takes the VM's own address for the tap (libvirt does the same).
func tapMAC(mac string) (net.HardwareAddr, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return nil, fmt.Errorf("port MAC %q: not a MAC address", mac)
	}
	out := append(net.HardwareAddr(nil), hw...)
	out[0] = 0xfe
	return out, nil
}

// EnsurePort creates whatever is missing of the port's tap, qbr and veth pair and
// corrects MTU, bridge membership and link state. A port that is already complete is
// left untouched; a half-made one is completed.
func (h *Host) EnsurePort(p PortSpec) error {
	if p.ID == "" || p.MTU <= 0 {
		return fmt.Errorf("ensure port %q: ID and MTU must be set", p.ID)
	}
	mac, err := tapMAC(p.MAC)
	if err != nil {
		return fmt.Errorf("ensure port %s: %w", p.ID, err)
	}
	d := DevicesOf(p.ID)
	return h.Do(func() error {
		if err := ensurePort(d, p, mac); err != nil {
			return fmt.Errorf("ensure port %s: %w", p.ID, err)
		}
		return nil
	})
}

func linkByName(name string) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, nil
		}
		return nil, fmt.Errorf("look up %s: %w", name, err)
	}
	return l, nil
}

func ensurePort(d Devices, p PortSpec, mac net.HardwareAddr) error {
	br, err := ensureBridge(d.Qbr, p.MTU)
	if err != nil {
		return err
	}
	tap, err := ensureTap(d.Tap, p, mac)
	if err != nil {
		return err
	}
	qvb, qvo, err := ensureVeth(d.Qvb, d.Qvo, p.MTU)
	if err != nil {
		return err
	}
	// Bridge MTU follows its ports; set the ports first, then enslave, then the bridge.
	for _, l := range []netlink.Link{tap, qvb} {
		if l.Attrs().MasterIndex != br.Attrs().Index {
			if err := netlink.LinkSetMasterByIndex(l, br.Attrs().Index); err != nil {
				return fmt.Errorf("enslave %s to %s: %w", l.Attrs().Name, d.Qbr, err)
			}
		}
	}
	// Before anything comes up: an IPv6-enabled device would send DAD and router
	// solicitations into the VM's network as soon as it is up.
	if err := setPortSysctls(d); err != nil {
		return err
	}
	for _, l := range []netlink.Link{tap, qvb, qvo, br} {
		if l.Attrs().MTU != p.MTU {
			if err := netlink.LinkSetMTU(l, p.MTU); err != nil {
				return fmt.Errorf("set MTU %d on %s: %w", p.MTU, l.Attrs().Name, err)
			}
		}
		if l.Attrs().Flags&net.FlagUp == 0 {
			if err := netlink.LinkSetUp(l); err != nil {
				return fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
			}
		}
	}
	return nil
}

func ensureBridge(name string, mtu int) (netlink.Link, error) {
	l, err := linkByName(name)
	if err != nil {
		return nil, err
	}
	if l != nil {
		if _, ok := l.(*netlink.Bridge); !ok {
			return nil, fmt.Errorf("%s exists but is a %s, not a bridge", name, l.Type())
		}
	} else {
		off := false
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}, MulticastSnooping: &off}
		if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create bridge %s: %w", name, err)
		}
		if l, err = linkByName(name); err != nil || l == nil {
			return nil, fmt.Errorf("bridge %s vanished after create: %w", name, err)
		}
	}
	// STP, forward delay and ageing have no fields in netlink.Bridge, and the parsed
	// link does not report them; writing the same values again changes nothing.
	if err := setBridgeOptions(l.Attrs().Index); err != nil {
		return nil, fmt.Errorf("configure bridge %s: %w", name, err)
	}
	return l, nil
}

// portSysctls are the per-device settings that keep the host off a VM's segment.
// Traffic only crosses these devices; the host has no address on them, yet with the
// defaults it would still be a node there: qbr and qvo (which the kernel stack also
// sees with the userspace datapath) answer ARP for every address of the host, and
// every device with IPv6 gets a link-local address, sends DAD, router and multicast
// listener solicitations into the network and takes router advertisements from it
// (LP#1302080). os-vif sets arp_ignore=1, arp_announce=2 and disable_ipv6=1 on qbr;
// lanes does the same on qvo, and disables IPv6 on all four devices.
func portSysctls(d Devices) [][2]string {
	var out [][2]string
	for _, dev := range []string{d.Tap, d.Qbr, d.Qvb, d.Qvo} {
		out = append(out, [2]string{"/proc/sys/net/ipv6/conf/" + dev + "/disable_ipv6", "1"})
	}
	for _, dev := range []string{d.Qbr, d.Qvo} {
		out = append(out,
			[2]string{"/proc/sys/net/ipv4/conf/" + dev + "/arp_ignore", "1"},
			[2]string{"/proc/sys/net/ipv4/conf/" + dev + "/arp_announce", "2"})
	}
	return out
}

// setPortSysctls writes portSysctls on the namespace thread. A namespace without
// IPv6 has no ipv6 files: nothing to disable there.
func setPortSysctls(d Devices) error {
	for _, kv := range portSysctls(d) {
		if err := writeSysctl(kv[0], kv[1]); err != nil {
			if errors.Is(err, os.ErrNotExist) && strings.Contains(kv[0], "/ipv6/") {
				continue
			}
			return fmt.Errorf("set %s=%s: %w", strings.TrimPrefix(kv[0], "/proc/sys/"), kv[1], err)
		}
	}
	return nil
}

// portSysctlsSet reports whether a port's devices have their settings, so that a
// complete port whose sysctls were reset (by hand, or by an older lanes) is fixed.
func portSysctlsSet(d Devices) bool {
	for _, kv := range portSysctls(d) {
		cur, err := os.ReadFile(kv[0])
		if errors.Is(err, os.ErrNotExist) && strings.Contains(kv[0], "/ipv6/") {
			continue
		}
		if err != nil || strings.TrimSpace(string(cur)) != kv[1] {
			return false
		}
	}
	return true
}

func setBridgeOptions(index int) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	li := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	li.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := li.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(nl.IFLA_BR_STP_STATE, nl.Uint32Attr(0))
	data.AddRtAttr(nl.IFLA_BR_FORWARD_DELAY, nl.Uint32Attr(0))
	data.AddRtAttr(nl.IFLA_BR_MCAST_SNOOPING, []byte{0})
	// Ageing 0 (os-vif's setting) keeps no MAC entries, so the two-port qbr always
	// passes a frame to its other port: a VM sending from a neighbour's MAC cannot
	// teach its own qbr that the neighbour sits behind the tap and black-hole its
	// own traffic to that neighbour.
	data.AddRtAttr(nl.IFLA_BR_AGEING_TIME, nl.Uint32Attr(0))
	req.AddData(li)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

func ensureTap(name string, p PortSpec, mac net.HardwareAddr) (netlink.Link, error) {
	l, err := linkByName(name)
	if err != nil {
		return nil, err
	}
	if l != nil {
		if _, ok := l.(*netlink.Tuntap); !ok {
			return nil, fmt.Errorf("%s exists but is a %s, not a tap", name, l.Type())
		}
		return l, nil
	}
	tap := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: name},
		Mode:      netlink.TUNTAP_MODE_TAP,
		Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_ONE_QUEUE,
		Owner:     p.TapOwner,
		Group:     p.TapGroup,
	}
	if err := netlink.LinkAdd(tap); err != nil {
		return nil, fmt.Errorf("create tap %s: %w", name, err)
	}
	if l, err = linkByName(name); err != nil || l == nil {
		return nil, fmt.Errorf("tap %s vanished after create: %w", name, err)
	}
	if err := netlink.LinkSetHardwareAddr(l, mac); err != nil {
		return nil, fmt.Errorf("set MAC of %s: %w", name, err)
	}
	return l, nil
}

func ensureVeth(qvb, qvo string, mtu int) (netlink.Link, netlink.Link, error) {
	b, err := linkByName(qvb)
	if err != nil {
		return nil, nil, err
	}
	o, err := linkByName(qvo)
	if err != nil {
		return nil, nil, err
	}
	if b != nil && o != nil {
		if pi, err := netlink.VethPeerIndex(&netlink.Veth{LinkAttrs: *b.Attrs()}); err == nil && pi == o.Attrs().Index {
			return b, o, nil
		}
	}
	// A lone or mismatched end is a leftover of an interrupted plug: recreate the pair.
	for _, l := range []netlink.Link{b, o} {
		if l != nil {
			if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
				return nil, nil, fmt.Errorf("delete stale %s: %w", l.Attrs().Name, err)
			}
		}
	}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: qvb, MTU: mtu}, PeerName: qvo, PeerMTU: uint32(mtu)}
	if err := netlink.LinkAdd(v); err != nil {
		return nil, nil, fmt.Errorf("create veth %s/%s: %w", qvb, qvo, err)
	}
	if b, err = linkByName(qvb); err != nil || b == nil {
		return nil, nil, fmt.Errorf("veth %s vanished after create: %w", qvb, err)
	}
	if o, err = linkByName(qvo); err != nil || o == nil {
		return nil, nil, fmt.Errorf("veth %s vanished after create: %w", qvo, err)
	}
	return b, o, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT)
}

// DeletePort removes the port's tap, qbr and veth pair. Parts already gone are fine.
// qvo disappears with its peer; if OVS still lists it as a port, the controller
// removes that row.
func (h *Host) DeletePort(portID string) error { return h.DeletePorts([]string{portID}) }

// DeletePorts removes the devices of many ports in one kernel batch. Each device
// removal waits for an RCU grace period (tens of milliseconds here), so the devices
// are first moved into a private interface group and then deleted with one
// RTM_DELLINK for that group: one grace period for all of them.
func (h *Host) DeletePorts(portIDs []string) error {
	if len(portIDs) == 0 {
		return nil
	}
	return h.Do(func() error {
		byName, err := linksByName()
		if err != nil {
			return fmt.Errorf("delete ports: %w", err)
		}
		return deletePorts(byName, portIDs, 0)
	})
}

func deletePorts(byName map[string]netlink.Link, portIDs []string, batch uint32) error {
	var doomed []netlink.Link
	for _, id := range portIDs {
		d := DevicesOf(id)
		// A veth peer goes with its partner; naming both in the batch is not needed.
		names := []string{d.Tap, d.Qbr, d.Qvb}
		if byName[d.Qvb] == nil {
			names = append(names, d.Qvo)
		}
		for _, n := range names {
			if l := byName[n]; l != nil {
				doomed = append(doomed, l)
			}
		}
	}
	if len(doomed) == 0 {
		return nil
	}
	group := deleteGroupBase + uint32(time.Now().UnixNano()&0xfff)<<4 + batch
	for _, l := range doomed {
		if err := netlink.LinkSetGroup(l, int(group)); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete ports: mark %s: %w", l.Attrs().Name, err)
		}
	}
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(group)))
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("delete ports %v: %w", portIDs, err)
	}
	return nil
}

// linksByName dumps the namespace's links, retrying a dump that a concurrent change
// interrupted.
func linksByName() (map[string]netlink.Link, error) {
	var links []netlink.Link
	var err error
	for range 5 {
		links, err = netlink.LinkList()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	m := make(map[string]netlink.Link, len(links))
	for _, l := range links {
		m[l.Attrs().Name] = l
	}
	return m, nil
}

// deleteGroupBase starts the interface group numbers used for batch deletion.
const deleteGroupBase = 0x4c4e0000

// PortState is what ListPorts found of one port, keyed by the 11-character device ID.
type PortState struct {
	DeviceID           string // the first 11 characters of the port ID
	Devices            Devices
	Tap, Qbr, Qvb, Qvo bool // which devices exist
}

// Complete reports whether all four devices exist.
func (s PortState) Complete() bool { return s.Tap && s.Qbr && s.Qvb && s.Qvo }

// ListPorts lists the lanes ports present in the host namespace, found by device name
// (tap/qbr/qvb/qvo + 11 characters), so a reconciler can remove leftovers. Device IDs
// are compared with a port's ID through api.TapName etc. Only tap devices of type tun
// count, so a tap of other software with a similar name is not mistaken for a port.
func (h *Host) ListPorts() ([]PortState, error) {
	var byName map[string]netlink.Link
	if err := h.Do(func() (err error) {
		byName, err = linksByName()
		return err
	}); err != nil {
		return nil, err
	}
	ports := map[string]*PortState{}
	get := func(id string) *PortState {
		s := ports[id]
		if s == nil {
			s = &PortState{DeviceID: id, Devices: DevicesOf(id)}
			ports[id] = s
		}
		return s
	}
	for n, l := range byName {
		if len(n) != 3+api.DeviceIDLen {
			continue
		}
		id := n[3:]
		switch {
		case strings.HasPrefix(n, "tap") && l.Type() == "tuntap":
			get(id).Tap = true
		case strings.HasPrefix(n, "qbr") && l.Type() == "bridge":
			get(id).Qbr = true
		case strings.HasPrefix(n, "qvb") && l.Type() == "veth":
			get(id).Qvb = true
		case strings.HasPrefix(n, "qvo") && l.Type() == "veth":
			get(id).Qvo = true
		}
	}
	out := make([]PortState, 0, len(ports))
	for _, s := range ports {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DeviceID < out[j].DeviceID })
	return out, nil
}

// DeviceID is the part of a port ID that names its devices.
func DeviceID(portID string) string {
	return strings.TrimPrefix(api.TapName(portID), "tap")
}

// EnsurePorts ensures many ports with one link dump: ports whose four devices already
// exist with the right type, bridge membership, MTU and up state are skipped, the
// others go through EnsurePort. This keeps a no-op reconcile of hundreds of ports
// cheap. Failures are returned per port ID, so one bad port does not hold up the rest.
func (h *Host) EnsurePorts(specs []PortSpec) (map[string]error, error) {
	var todo []PortSpec
	if err := h.Do(func() error {
		byName, err := linksByName()
		if err != nil {
			return err
		}
		// The sysctls are read here, on the namespace thread: /proc/sys/net shows
		// the namespace of the thread that reads it.
		for _, p := range specs {
			if !portComplete(byName, p) || !portSysctlsSet(DevicesOf(p.ID)) {
				todo = append(todo, p)
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	failed := map[string]error{}
	for _, p := range todo {
		if err := h.EnsurePort(p); err != nil {
			failed[p.ID] = err
		}
	}
	return failed, nil
}

func portComplete(byName map[string]netlink.Link, p PortSpec) bool {
	d := DevicesOf(p.ID)
	br, tap, qvb, qvo := byName[d.Qbr], byName[d.Tap], byName[d.Qvb], byName[d.Qvo]
	if br == nil || tap == nil || qvb == nil || qvo == nil ||
		br.Type() != "bridge" || tap.Type() != "tuntap" || qvb.Type() != "veth" || qvo.Type() != "veth" {
		return false
	}
	idx := br.Attrs().Index
	if tap.Attrs().MasterIndex != idx || qvb.Attrs().MasterIndex != idx {
		return false
	}
	// A veth's ParentIndex is its peer's index.
	if qvb.Attrs().ParentIndex != qvo.Attrs().Index {
		return false
	}
	for _, l := range []netlink.Link{br, tap, qvb, qvo} {
		if l.Attrs().MTU != p.MTU || l.Attrs().Flags&net.FlagUp == 0 {
			return false
		}
	}
	return true
}
