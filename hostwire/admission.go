package hostwire

import (
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/lanes-net/lanes/api"
)

// A port's rules admit a connection once, when its first packet is NEW; after that
// the RELATED,ESTABLISHED rule at the top of every port chain lets it go on. So
// when a rule goes, or a remote-group member leaves, the firewall must also forget
// the connections only that admission let in, or they keep flowing (Neutron deletes
// them too). portAdmission is what the rules admit, in a form a conntrack entry can
// be checked against; the Firewall keeps the last applied one per port and, on a
// change, deletes in the port's zone the entries the old one admitted and the new
// one does not: one conntrack dump per family, filtered in lanesd.

// portAdmission is what the security groups of one port admit.
type portAdmission struct {
	zone int
	all  bool           // port security off: everything
	own  []netip.Prefix // addresses the port may send from
	// rules are the port's group rules of both families, deduplicated.
	rules []admission
}

// admission is one rendered security-group rule.
type admission struct {
	dir              string // api.Ingress or api.Egress
	fam              Family
	proto            uint8 // 0: any
	portMin, portMax uint16
	// icmpTyped: an ICMP rule narrowed to a type; conntrack entries do not show it,
	// so such a rule may admit any ICMP entry.
	icmpTyped bool
	anyRemote bool
	remote    []netip.Prefix // when !anyRemote: a CIDR, or a remote group's members
}

func admissionOf(fam Family, r *api.Rule, set *IPSet) (admission, error) {
	a := admission{dir: r.Direction, fam: fam, anyRemote: true}
	proto, err := api.ProtocolNumber(r.Protocol)
	if err != nil {
		return a, err
	}
	a.proto = uint8(proto)
	switch proto {
	case 1, 58:
		a.icmpTyped = r.ICMPType != nil
	case 6, 17, 132:
		lo, hi := r.PortMin, r.PortMax
		if hi == 0 {
			hi = lo
		}
		if lo != 0 && !(lo <= 1 && hi == 65535) {
			a.portMin, a.portMax = uint16(lo), uint16(hi)
		}
	}
	switch {
	case set != nil:
		// Shared by every port with a rule for this set: parsed once.
		a.anyRemote, a.remote = false, set.prefixes
	case r.RemoteCIDR != "":
		p, err := parsePrefix(r.RemoteCIDR)
		if err != nil {
			return a, err
		}
		if p.Bits() != 0 {
			a.anyRemote, a.remote = false, []netip.Prefix{p}
		}
	}
	return a, nil
}

// ownPrefixes are the addresses a port sends from: fixed IPs, address pairs and the
// link-local address of each of its MACs.
func ownPrefixes(p *FirewallPort) ([]netip.Prefix, error) {
	var out []netip.Prefix
	macs := []string{p.MAC}
	for _, ip := range p.FixedIPs {
		pfx, err := parsePrefix(ip)
		if err != nil {
			return nil, err
		}
		out = append(out, pfx)
	}
	for _, ap := range p.AllowedAddressPairs {
		pfx, err := parsePrefix(ap.IP)
		if err != nil {
			return nil, err
		}
		out = append(out, pfx)
		if ap.MAC != "" {
			macs = append(macs, ap.MAC)
		}
	}
	for _, m := range macs {
		if hw, err := net.ParseMAC(m); err == nil && len(hw) == 6 {
			out = append(out, netip.PrefixFrom(api.LinkLocal(hw), 128))
		}
	}
	return out, nil
}

func (pa *portAdmission) equal(o portAdmission) bool {
	return pa.zone == o.zone && pa.all == o.all &&
		slices.Equal(pa.own, o.own) &&
		slices.EqualFunc(pa.rules, o.rules, func(x, y admission) bool {
			return x.dir == y.dir && x.fam == y.fam && x.proto == y.proto && x.portMin == y.portMin &&
				x.portMax == y.portMax && x.icmpTyped == y.icmpTyped && x.anyRemote == y.anyRemote &&
				slices.Equal(x.remote, y.remote)
		})
}

func (pa *portAdmission) isOwn(a netip.Addr) bool {
	for _, p := range pa.own {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// admits reports whether some rule admits a connection of direction dir with the
// given protocol and destination port whose other end is remote.
func (pa *portAdmission) admits(dir string, fam Family, proto uint8, dport uint16, remote netip.Addr) bool {
	if pa.all {
		return true
	}
	for _, r := range pa.rules {
		if r.dir != dir || r.fam != fam || (r.proto != 0 && r.proto != proto) {
			continue
		}
		if r.portMin != 0 && (dport < r.portMin || dport > r.portMax) {
			continue
		}
		if r.anyRemote || slices.ContainsFunc(r.remote, func(p netip.Prefix) bool { return p.Contains(remote) }) {
			return true
		}
	}
	return false
}

// revoked selects, in the zones of ports whose admission changed, the conntrack
// entries the old admission let in and the new one does not.
type revoked struct {
	zones map[uint16][2]portAdmission // zone -> old, new
}

func (rv revoked) MatchConntrackFlow(f *netlink.ConntrackFlow) bool {
	ch, ok := rv.zones[f.Zone]
	if !ok {
		return false
	}
	old, cur := ch[0], ch[1]
	src, ok1 := netip.AddrFromSlice(f.Forward.SrcIP)
	dst, ok2 := netip.AddrFromSlice(f.Forward.DstIP)
	if !ok1 || !ok2 {
		return false
	}
	src, dst = src.Unmap(), dst.Unmap()
	fam := V4
	if f.FamilyType == unix.AF_INET6 {
		fam = V6
	}
	// The zone holds both directions of the port's traffic: a connection the VM
	// opened starts at one of its addresses, one it accepted ends at one. When both
	// ends are its own (an address pair covering the peer) both readings count.
	own := func(a netip.Addr) bool { return old.isOwn(a) || cur.isOwn(a) }
	type reading struct {
		dir    string
		remote netip.Addr
	}
	var readings []reading
	if own(src) || src.IsUnspecified() {
		readings = append(readings, reading{api.Egress, dst})
	}
	if !own(src) || own(dst) {
		readings = append(readings, reading{api.Ingress, src})
	}
	was, is := false, false
	for _, r := range readings {
		was = was || old.admits(r.dir, fam, f.Forward.Protocol, f.Forward.DstPort, r.remote)
		is = is || cur.admits(r.dir, fam, f.Forward.Protocol, f.Forward.DstPort, r.remote)
	}
	return was && !is
}

// covers reports whether pa admits every connection old admitted, so that going
// from old to pa forgets nothing and needs no conntrack dump. It is sufficient, not
// exact: with other own addresses it says no, and the dump decides.
func (pa *portAdmission) covers(old *portAdmission) bool {
	if pa.all {
		return true
	}
	if old.all || !slices.Equal(pa.own, old.own) {
		return false
	}
	for i := range old.rules {
		o := &old.rules[i]
		if !slices.ContainsFunc(pa.rules, func(c admission) bool { return c.covers(o) }) {
			return false
		}
	}
	return true
}

// covers reports whether rule a admits everything rule o does, on the fields
// portAdmission.admits looks at.
func (a *admission) covers(o *admission) bool {
	if a.dir != o.dir || a.fam != o.fam || (a.proto != 0 && a.proto != o.proto) {
		return false
	}
	if a.portMin != 0 && (o.portMin == 0 || o.portMin < a.portMin || o.portMax > a.portMax) {
		return false
	}
	return a.anyRemote || (!o.anyRemote && subset(o.remote, a.remote))
}

// subset reports whether every prefix of sub is in set. Both are usually in the
// same (sorted) order, which one walk checks; otherwise a map does.
func subset(sub, set []netip.Prefix) bool {
	j := 0
	for _, p := range sub {
		for j < len(set) && set[j] != p {
			j++
		}
		if j == len(set) {
			in := make(map[netip.Prefix]bool, len(set))
			for _, q := range set {
				in[q] = true
			}
			for _, q := range sub {
				if !in[q] {
					return false
				}
			}
			return true
		}
		j++
	}
	return true
}
