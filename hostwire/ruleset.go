package hostwire

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/lanes-net/lanes/api"
)

// Chain names. Neutron's wrapped names are "neutron-openvswi-" + 11 characters; ours
// are shorter ("lanes-" + at most 12) and stay far below iptables' 28-character limit.
const (
	ChainPrefix  = "lanes-"
	ChainForward = "lanes-FORWARD"
	ChainInput   = "lanes-INPUT"
	// ChainToHost holds, per port, the drops of traffic from its devices to the host;
	// lanes-INPUT sends only packets that come in on a qbr or qvo device there.
	ChainToHost = "lanes-to-host"
	// ChainRouted holds, per port, the drops of traffic the host would route from or
	// to its devices; lanes-FORWARD sends only packets that are not bridged there.
	ChainRouted     = "lanes-routed"
	ChainPrerouting = "lanes-PREROUTING"
	ChainSG         = "lanes-sg-chain"
	ChainFallback   = "lanes-sg-fallback"
	// SetPrefix4 and SetPrefix6 start the ipset names of remote groups.
	SetPrefix4 = "lanes4-"
	SetPrefix6 = "lanes6-"
	// ZoneStart is the first conntrack zone given to a port (Neutron's ZONE_START).
	ZoneStart = 4097
	// ZoneMax is the last usable conntrack zone.
	ZoneMax = 65535
)

// IngressChain is the per-port chain for traffic to the VM (--physdev-out tap).
func IngressChain(portID string) string { return ChainPrefix + "i" + DeviceID(portID) }

// EgressChain is the per-port chain for traffic from the VM (--physdev-in tap).
func EgressChain(portID string) string { return ChainPrefix + "o" + DeviceID(portID) }

// SpoofChain is the per-port source IP/MAC anti-spoofing chain.
func SpoofChain(portID string) string { return ChainPrefix + "s" + DeviceID(portID) }

// SetName is the ipset holding the addresses of a remote group's members on one
// network, for one family: a rule "from group G" admits G's members on the port's own
// network only, so two networks with the same CIDR never admit each other's ports.
// It is "lanes4-" or "lanes6-", 11 characters of the group ID, "-" and 10 of the
// network ID: 29 characters at most, so the temporary "-n" copy used for atomic
// replacement fits ipset's 31. Render refuses two pairs that share a name.
func SetName(family Family, groupID, networkID string) string {
	prefix := SetPrefix4
	if family == V6 {
		prefix = SetPrefix6
	}
	return prefix + truncate(groupID, 11) + "-" + truncate(networkID, 10)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Family is an IP family: V4 for iptables, V6 for ip6tables.
type Family int

// IP families.
const (
	V4 Family = 4
	V6 Family = 6
)

func (f Family) String() string { return "IPv" + strconv.Itoa(int(f)) }

// FirewallPort is the firewall's view of one port bound to this host.
type FirewallPort struct {
	ID string
	// NetworkID scopes the port's remote-group rules to members on its network.
	NetworkID           string
	MAC                 string
	FixedIPs            []string
	AllowedAddressPairs []api.AddressPair
	// PortSecurity false means no filtering at all (Neutron: accept everything).
	PortSecurity   bool
	SecurityGroups []string
	// Zone is the conntrack zone; the Firewall fills it in, Render needs it.
	Zone int
}

// FirewallState is the desired firewall of one host.
type FirewallState struct {
	Ports  []FirewallPort
	Groups map[string]*api.SecurityGroup
	// Members holds, per security group ID and network ID, the addresses (IP or CIDR)
	// of every port of that network in that group, on any host: the content of the
	// remote-group ipsets.
	Members map[string]map[string][]string
	// ServerLinkLocal is the IPv6 link-local source of lanesd's router advertisements
	// and DHCPv6 replies; every filtered port admits those from it (Neutron admits
	// the RAs of the subnet's router link-local). Invalid: none admitted.
	ServerLinkLocal netip.Addr
}

// TableID names one iptables table of one family.
type TableID struct {
	Family Family
	Table  string // "filter" or "raw"
}

func (t TableID) String() string { return fmt.Sprintf("%s/%s", t.Family, t.Table) }

// Tables lists the tables lanes writes, in the order they are applied.
var Tables = []TableID{{V4, "raw"}, {V4, "filter"}, {V6, "raw"}, {V6, "filter"}}

// Hook is a rule in a built-in chain that jumps into a lanes chain.
type Hook struct {
	Chain  string // built-in chain, e.g. FORWARD
	Target string // lanes chain
}

// Rule is the rule-spec written after "-A <chain>".
func (h Hook) Rule() string {
	return fmt.Sprintf("-m comment --comment \"lanes security groups\" -j %s", h.Target)
}

// hooks are inserted at the top of the built-in chains, as Neutron's wrapped chains are.
var hooks = map[string][]Hook{
	"filter": {{"FORWARD", ChainForward}, {"INPUT", ChainInput}},
	"raw":    {{"PREROUTING", ChainPrerouting}},
}

// Table is the desired content of the lanes chains of one table: chain -> rule specs
// (without "-A <chain>").
type Table struct {
	ID     TableID
	Chains map[string][]string
}

// IPSet is one remote-group address set.
type IPSet struct {
	Name    string
	Family  Family
	Members []string // sorted, canonical (a /32 or /128 is written as the bare address)
	// prefixes are Members parsed, once per set, for the admission model.
	prefixes []netip.Prefix
	// src is the member list the set was made from: an Apply whose list for the
	// set is equal reuses the set instead of parsing and sorting it again.
	src []string
}

// Ruleset is the rendered firewall of a host.
type Ruleset struct {
	Tables map[TableID]*Table
	Sets   map[string]*IPSet
	// admits is, per port device ID, what the port's rules admit: the Firewall
	// compares it with the last applied one to forget connections no rule admits
	// any more.
	admits map[string]portAdmission
	// setOwner names the (group, network) pair of each set, to refuse a shared name.
	setOwner map[string]string
	// prev holds the sets of an earlier Ruleset that render may reuse.
	prev map[string]*IPSet
}

// RestoreText renders one table as complete iptables-restore input (every lanes chain
// declared, flushed and filled, hooks not included). The Firewall writes only changed
// chains; this is the full picture, used by golden tests and for debugging.
func (rs *Ruleset) RestoreText(id TableID) string {
	t := rs.Tables[id]
	var b strings.Builder
	fmt.Fprintf(&b, "*%s\n", id.Table)
	names := sortedKeys(t.Chains)
	for _, c := range names {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c)
	}
	for _, c := range names {
		for _, r := range t.Chains[c] {
			fmt.Fprintf(&b, "-A %s %s\n", c, r)
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// IPSetRestoreText renders all sets as `ipset restore` input creating them from scratch.
func (rs *Ruleset) IPSetRestoreText() string {
	var b strings.Builder
	for _, n := range sortedKeys(rs.Sets) {
		writeSet(&b, rs.Sets[n], n)
	}
	return b.String()
}

func setFamily(f Family) string {
	if f == V6 {
		return "inet6"
	}
	return "inet"
}

func writeSet(b *strings.Builder, s *IPSet, as string) {
	fmt.Fprintf(b, "create %s hash:net family %s -exist\n", as, setFamily(s.Family))
	fmt.Fprintf(b, "flush %s\n", as)
	for _, m := range s.Members {
		fmt.Fprintf(b, "add %s %s\n", as, m)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

const (
	cmtKnown    = `-m comment --comment "Direct packets associated with a known session to the RETURN chain."`
	cmtInvalid  = `-m comment --comment "Drop packets that appear related to an existing connection (e.g. TCP ACK/FIN) but do not have an entry in conntrack."`
	cmtFallback = `-m comment --comment "Send unmatched traffic to the fallback chain."`
	cmtDHCP     = `-m comment --comment "Allow DHCP client traffic."`
	cmtDHCPSpf  = `-m comment --comment "Prevent DHCP Spoofing by VM."`
	cmtPair     = `-m comment --comment "Allow traffic from defined IP/MAC pairs."`
	cmtPairDrop = `-m comment --comment "Drop traffic without an IP/MAC allow rule."`
	cmtRA       = `-m comment --comment "Drop IPv6 Router Advts from VM Instance."`
	cmtToHost   = `-m comment --comment "Traffic from a VM device to the host."`
	cmtRouted   = `-m comment --comment "Traffic the host would route, not bridge."`
)

func portComment(what, portID string) string {
	return fmt.Sprintf(`-m comment --comment "%s %s"`, what, portID)
}

// Render computes the desired lanes chains of every table and the remote-group ipsets.
// It is pure: the same state gives the same text, ports in sorted order.
func Render(st FirewallState) (*Ruleset, error) { return render(st, nil) }

// render is Render reusing the sets of prev (an earlier Ruleset) whose member list
// is equal to the one st has for them: a set is parsed and sorted only when its
// members changed, so a member change elsewhere costs a comparison, not a rebuild.
func render(st FirewallState, prev map[string]*IPSet) (*Ruleset, error) {
	rs := &Ruleset{prev: prev, Tables: map[TableID]*Table{}, Sets: map[string]*IPSet{}, admits: map[string]portAdmission{}, setOwner: map[string]string{}}
	for _, id := range Tables {
		rs.Tables[id] = &Table{ID: id, Chains: map[string][]string{}}
	}
	ports := append([]FirewallPort(nil), st.Ports...)
	sort.Slice(ports, func(i, j int) bool { return ports[i].ID < ports[j].ID })
	for i := 1; i < len(ports); i++ {
		if DeviceID(ports[i].ID) == DeviceID(ports[i-1].ID) {
			return nil, fmt.Errorf("ports %s and %s share the device name %s", ports[i-1].ID, ports[i].ID, api.TapName(ports[i].ID))
		}
	}
	for _, fam := range []Family{V4, V6} {
		raw := rs.Tables[TableID{fam, "raw"}].Chains
		filter := rs.Tables[TableID{fam, "filter"}].Chains
		raw[ChainPrerouting] = []string{}
		// Two guards keep the per-port drops off the hot paths: bridged VM traffic
		// passes one rule of lanes-FORWARD more, and traffic for the host that does
		// not come from a VM device (management, kernel-datapath tunnels) two of
		// lanes-INPUT, instead of every port's rules.
		filter[ChainForward] = []string{"-m physdev ! --physdev-is-bridged " + cmtRouted + " -j " + ChainRouted}
		filter[ChainInput] = []string{
			"-i " + api.QbrName("") + "+ " + cmtToHost + " -j " + ChainToHost,
			"-i " + api.QvoName("") + "+ " + cmtToHost + " -j " + ChainToHost,
		}
		filter[ChainToHost] = []string{}
		filter[ChainRouted] = []string{}
		filter[ChainSG] = []string{}
		filter[ChainFallback] = []string{`-m comment --comment "Default drop rule for unmatched traffic." -j DROP`}
		for i := range ports {
			p := &ports[i]
			if p.Zone < 1 || p.Zone > ZoneMax {
				return nil, fmt.Errorf("port %s: conntrack zone %d out of range", p.ID, p.Zone)
			}
			tap, qvb := api.TapName(p.ID), api.QvbName(p.ID)
			zc := portComment("Set zone for", p.ID)
			raw[ChainPrerouting] = append(raw[ChainPrerouting],
				fmt.Sprintf("-m physdev --physdev-in %s %s -j CT --zone %d", qvb, zc, p.Zone),
				fmt.Sprintf("-i %s %s -j CT --zone %d", qvb, zc, p.Zone),
				fmt.Sprintf("-m physdev --physdev-in %s %s -j CT --zone %d", tap, zc, p.Zone))
			filter[ChainToHost] = append(filter[ChainToHost], toHost(p.ID)...)
			filter[ChainRouted] = append(filter[ChainRouted], routed(p.ID)...)
			if !p.PortSecurity {
				c := `-m comment --comment "Accept all packets when port security is disabled."`
				filter[ChainForward] = append(filter[ChainForward],
					fmt.Sprintf("-m physdev --physdev-out %s --physdev-is-bridged %s -j ACCEPT", tap, c),
					fmt.Sprintf("-m physdev --physdev-in %s --physdev-is-bridged %s -j ACCEPT", tap, c))
				rs.admits[DeviceID(p.ID)] = portAdmission{zone: p.Zone, all: true}
				continue
			}
			in, out, spoof := IngressChain(p.ID), EgressChain(p.ID), SpoofChain(p.ID)
			pc := portComment("Security groups of port", p.ID)
			filter[ChainForward] = append(filter[ChainForward],
				fmt.Sprintf("-m physdev --physdev-out %s --physdev-is-bridged %s -j %s", tap, pc, ChainSG),
				fmt.Sprintf("-m physdev --physdev-in %s --physdev-is-bridged %s -j %s", tap, pc, ChainSG))
			filter[ChainSG] = append(filter[ChainSG],
				fmt.Sprintf("-m physdev --physdev-out %s --physdev-is-bridged %s -j %s", tap, pc, in),
				fmt.Sprintf("-m physdev --physdev-in %s --physdev-is-bridged %s -j %s", tap, pc, out))
			ingress, egress, err := groupRules(fam, p, st, rs)
			if err != nil {
				return nil, err
			}
			spoofRules, err := spoofChain(fam, p)
			if err != nil {
				return nil, err
			}
			filter[spoof] = spoofRules
			filter[in] = ingressChain(fam, p, ingress, st.ServerLinkLocal)
			filter[out] = egressChain(fam, spoof, egress)
		}
		filter[ChainSG] = append(filter[ChainSG], "-j ACCEPT")
	}
	return rs, nil
}

// toHost drops whatever the host itself would receive from a port: a frame
// addressed to qbr's or qvo's MAC reaches the host's stack, with its sockets and
// routing. Neutron's INPUT jump (--physdev-in tap --physdev-is-bridged) never matches
// in INPUT, where nothing is bridged, so such traffic went unfiltered; a priority-
// tagged frame, which br_netfilter does not look at, arrives with no physdev at all.
// lanes serves nothing to VMs from the host's stack (DHCP is answered from OpenFlow),
// so INPUT from a port's devices is dropped whatever its port security.
func toHost(portID string) []string {
	c := portComment("Drop traffic to the host from port", portID)
	return []string{
		fmt.Sprintf("-i %s %s -j DROP", api.QbrName(portID), c),
		fmt.Sprintf("-i %s %s -j DROP", api.QvoName(portID), c),
	}
}

// routed drops what the host would route from or to a port instead of bridging it
// (lanes-FORWARD sends only such packets here): on a host with forwarding on, a VM
// could otherwise send through the host's routing table, e.g. a hand-made VXLAN
// packet to another host's tunnel IP that lands in another tenant's network.
// "! --physdev-is-bridged" also matches packets with no physdev information, as
// priority-tagged ones.
func routed(portID string) []string {
	c := portComment("Drop traffic the host would route for port", portID)
	var out []string
	for _, dev := range []string{api.QbrName(portID), api.QvoName(portID)} {
		out = append(out, fmt.Sprintf("-i %s %s -j DROP", dev, c), fmt.Sprintf("-o %s %s -j DROP", dev, c))
	}
	return out
}

func ingressChain(fam Family, p *FirewallPort, sgRules []string, server netip.Addr) []string {
	var r []string
	if fam == V6 {
		// MLD query, neighbour solicitation and advertisement must reach the VM before
		// any connection exists.
		for _, t := range []int{130, 135, 136} {
			r = append(r, fmt.Sprintf("-p ipv6-icmp -m icmp6 --icmpv6-type %d -j RETURN", t))
		}
		// Provider rules: lanesd's router advertisements and DHCPv6 replies, which
		// answer nothing conntrack knows (an RA is untracked, a DHCPv6 reply comes from
		// the server's link-local, not the multicast group the client asked).
		if server.Is6() {
			r = append(r,
				fmt.Sprintf("-s %s/128 -p ipv6-icmp -m icmp6 --icmpv6-type 134 -j RETURN", server),
				fmt.Sprintf("-s %s/128 -p udp -m udp --sport 547 --dport 546 -j RETURN", server))
		}
	}
	r = append(r, "-m state --state RELATED,ESTABLISHED "+cmtKnown+" -j RETURN")
	if fam == V4 {
		// Provider rules: DHCP replies to the port's addresses and to broadcast.
		for _, ip := range p.FixedIPs {
			if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
				r = append(r, fmt.Sprintf("-d %s/32 -p udp -m udp --sport 67 --dport 68 -j RETURN", a))
			}
		}
		r = append(r, "-d 255.255.255.255/32 -p udp -m udp --sport 67 --dport 68 -j RETURN")
	}
	r = append(r, sgRules...)
	r = append(r, "-m state --state INVALID "+cmtInvalid+" -j DROP", cmtFallback+" -j "+ChainFallback)
	return r
}

func egressChain(fam Family, spoof string, sgRules []string) []string {
	var r []string
	if fam == V4 {
		r = append(r,
			"-s 0.0.0.0/32 -d 255.255.255.255/32 -p udp -m udp --sport 68 --dport 67 "+cmtDHCP+" -j RETURN",
			"-j "+spoof,
			"-p udp -m udp --sport 68 --dport 67 "+cmtDHCP+" -j RETURN",
			"-p udp -m udp --sport 67 --dport 68 "+cmtDHCPSpf+" -j DROP")
	} else {
		for _, t := range []int{131, 135, 143} {
			r = append(r, fmt.Sprintf("-s ::/128 -d ff02::/16 -p ipv6-icmp -m icmp6 --icmpv6-type %d -j RETURN", t))
		}
		r = append(r,
			"-j "+spoof,
			"-p ipv6-icmp -m icmp6 --icmpv6-type 134 "+cmtRA+" -j DROP",
			"-p ipv6-icmp -j RETURN",
			"-p udp -m udp --sport 546 --dport 547 "+cmtDHCP+" -j RETURN",
			"-p udp -m udp --sport 547 --dport 546 "+cmtDHCPSpf+" -j DROP")
	}
	r = append(r, "-m state --state RELATED,ESTABLISHED "+cmtKnown+" -j RETURN")
	r = append(r, sgRules...)
	r = append(r, "-m state --state INVALID "+cmtInvalid+" -j DROP", cmtFallback+" -j "+ChainFallback)
	return r
}

// spoofChain allows the port's (IP, MAC) pairs, address pairs first, then drops.
func spoofChain(fam Family, p *FirewallPort) ([]string, error) {
	mac, err := net.ParseMAC(p.MAC)
	if err != nil {
		return nil, fmt.Errorf("port %s: MAC %q: %w", p.ID, p.MAC, err)
	}
	type pair struct {
		src string
		mac net.HardwareAddr
	}
	var pairs []pair
	macs := []net.HardwareAddr{mac}
	for _, ap := range p.AllowedAddressPairs {
		m := mac
		if ap.MAC != "" {
			if m, err = net.ParseMAC(ap.MAC); err != nil {
				return nil, fmt.Errorf("port %s: address pair MAC %q: %w", p.ID, ap.MAC, err)
			}
			macs = append(macs, m)
		}
		pfx, err := parsePrefix(ap.IP)
		if err != nil {
			return nil, fmt.Errorf("port %s: address pair %q: %w", p.ID, ap.IP, err)
		}
		if famOf(pfx) == fam {
			pairs = append(pairs, pair{pfx.String(), m})
		}
	}
	for _, ip := range p.FixedIPs {
		pfx, err := parsePrefix(ip)
		if err != nil {
			return nil, fmt.Errorf("port %s: fixed IP %q: %w", p.ID, ip, err)
		}
		if famOf(pfx) == fam {
			pairs = append(pairs, pair{pfx.String(), mac})
		}
	}
	if fam == V6 {
		for _, m := range macs {
			pairs = append(pairs, pair{api.LinkLocal(m).String() + "/128", m})
		}
	}
	var r []string
	seen := map[string]bool{}
	for _, pr := range pairs {
		line := fmt.Sprintf("-s %s -m mac --mac-source %s %s -j RETURN", pr.src, strings.ToUpper(pr.mac.String()), cmtPair)
		if !seen[line] {
			seen[line] = true
			r = append(r, line)
		}
	}
	if len(r) == 0 {
		r = append(r, fmt.Sprintf("-m mac --mac-source %s %s -j RETURN", strings.ToUpper(mac.String()), cmtPair))
	}
	return append(r, cmtPairDrop+" -j DROP"), nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func famOf(p netip.Prefix) Family {
	if p.Addr().Is4() {
		return V4
	}
	return V6
}

// groupRules renders the port's security group rules of one family, deduplicated, in
// group order then rule order, registers the remote-group sets they use and records
// what they admit.
func groupRules(fam Family, p *FirewallPort, st FirewallState, rs *Ruleset) (ingress, egress []string, err error) {
	eth := api.IPv4
	if fam == V6 {
		eth = api.IPv6
	}
	pa, ok := rs.admits[DeviceID(p.ID)]
	if !ok {
		pa = portAdmission{zone: p.Zone}
		if pa.own, err = ownPrefixes(p); err != nil {
			return nil, nil, err
		}
	}
	defer func() { rs.admits[DeviceID(p.ID)] = pa }()
	seen := map[string]bool{}
	for _, gid := range p.SecurityGroups {
		g := st.Groups[gid]
		if g == nil {
			// A group the store no longer has allows nothing.
			continue
		}
		for i := range g.Rules {
			r := &g.Rules[i]
			if r.Ethertype != eth {
				continue
			}
			var set string
			if r.RemoteGroupID != "" {
				if p.NetworkID == "" {
					return nil, nil, fmt.Errorf("port %s: group %s rule %s: a remote-group rule needs the port's network ID", p.ID, gid, r.ID)
				}
				set = SetName(fam, r.RemoteGroupID, p.NetworkID)
				owner := r.RemoteGroupID + " on network " + p.NetworkID
				if prev, ok := rs.setOwner[set]; ok && prev != owner {
					return nil, nil, fmt.Errorf("remote groups %s and %s share the ipset name %s", prev, owner, set)
				}
				rs.setOwner[set] = owner
				if rs.Sets[set] == nil {
					src := st.Members[r.RemoteGroupID][p.NetworkID]
					if old := rs.prev[set]; old != nil && old.Family == fam && slices.Equal(old.src, src) {
						rs.Sets[set] = old
					} else {
						rs.Sets[set] = memberSet(set, fam, src)
					}
				}
			}
			spec, err := ruleSpec(fam, r, set)
			if err != nil {
				return nil, nil, fmt.Errorf("port %s: group %s rule %s: %w", p.ID, gid, r.ID, err)
			}
			key := r.Direction + " " + spec
			if seen[key] {
				continue
			}
			seen[key] = true
			a, err := admissionOf(fam, r, rs.Sets[set])
			if err != nil {
				return nil, nil, fmt.Errorf("port %s: group %s rule %s: %w", p.ID, gid, r.ID, err)
			}
			pa.rules = append(pa.rules, a)
			if r.Direction == api.Ingress {
				ingress = append(ingress, spec)
			} else {
				egress = append(egress, spec)
			}
		}
	}
	return ingress, egress, nil
}

func memberSet(name string, fam Family, members []string) *IPSet {
	seen := make(map[string]netip.Prefix, len(members))
	out := make([]string, 0, len(members))
	add := func(p netip.Prefix, s string) {
		if s == "" {
			s = p.String()
			if p.IsSingleIP() {
				s = p.Addr().String()
			}
		}
		if _, dup := seen[s]; !dup {
			seen[s] = p
			out = append(out, s)
		}
	}
	for _, m := range members {
		p, err := parsePrefix(m)
		if err != nil || famOf(p) != fam {
			continue
		}
		if p.Addr().Is4() && !strings.Contains(m, "/") {
			// A bare IPv4 address that parses is written canonically already (no
			// leading zeros, no mapped form): keep the member's own string.
			add(p, m)
			continue
		}
		if p.Bits() == 0 {
			// hash:net cannot hold a /0: store it as its two halves, as Neutron does.
			if fam == V4 {
				add(netip.MustParsePrefix("0.0.0.0/1"), "")
				add(netip.MustParsePrefix("128.0.0.0/1"), "")
			} else {
				add(netip.MustParsePrefix("::/1"), "")
				add(netip.MustParsePrefix("8000::/1"), "")
			}
			continue
		}
		add(p, "")
	}
	sort.Strings(out)
	prefixes := make([]netip.Prefix, len(out))
	for i, m := range out {
		prefixes[i] = seen[m]
	}
	// A copy: a caller may reuse the slice it passed.
	return &IPSet{Name: name, Family: fam, Members: out, prefixes: prefixes, src: slices.Clone(members)}
}

// ruleSpec turns a security group rule into iptables arguments, in the order Neutron's
// _generate_plain_rule_args uses.
func ruleSpec(fam Family, r *api.Rule, set string) (string, error) {
	var a []string
	if r.RemoteCIDR != "" {
		p, err := parsePrefix(r.RemoteCIDR)
		if err != nil {
			return "", fmt.Errorf("remote CIDR %q: %w", r.RemoteCIDR, err)
		}
		if p.Bits() != 0 {
			if r.Direction == api.Ingress {
				a = append(a, "-s", p.String())
			} else {
				a = append(a, "-d", p.String())
			}
		}
	}
	proto, err := api.ProtocolNumber(r.Protocol)
	if err != nil {
		return "", err
	}
	switch proto {
	case 0:
	case 1, 58:
		if fam == V4 && proto == 1 {
			a = append(a, "-p", "icmp")
			if r.ICMPType != nil {
				a = append(a, "-m", "icmp", "--icmp-type", icmpTypeCode(r))
			}
		} else if fam == V6 {
			a = append(a, "-p", "ipv6-icmp")
			if r.ICMPType != nil {
				a = append(a, "-m", "icmp6", "--icmpv6-type", icmpTypeCode(r))
			}
		} else {
			a = append(a, "-p", strconv.Itoa(proto))
		}
	case 6, 17, 132:
		name := map[int]string{6: "tcp", 17: "udp", 132: "sctp"}[proto]
		a = append(a, "-p", name, "-m", name)
		lo, hi := r.PortMin, r.PortMax
		if hi == 0 {
			hi = lo
		}
		switch {
		case lo == 0 || (lo <= 1 && hi == 65535):
		case lo == hi:
			a = append(a, "--dport", strconv.Itoa(lo))
		default:
			a = append(a, "-m", "multiport", "--dports", fmt.Sprintf("%d:%d", lo, hi))
		}
	default:
		a = append(a, "-p", strconv.Itoa(proto))
	}
	if set != "" {
		dir := "src"
		if r.Direction == api.Egress {
			dir = "dst"
		}
		a = append(a, "-m", "set", "--match-set", set, dir)
	}
	a = append(a, "-j", "RETURN")
	return strings.Join(a, " "), nil
}

func icmpTypeCode(r *api.Rule) string {
	s := strconv.Itoa(*r.ICMPType)
	if r.ICMPCode != nil {
		s += "/" + strconv.Itoa(*r.ICMPCode)
	}
	return s
}
