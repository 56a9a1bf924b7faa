package hostwire

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/lanes-net/lanes/api"
)

// The security-group model: what a port's firewall does with one packet. It does not
// restate the semantics of security groups; it renders the port's chains with Render
// and runs the packet through them the way the kernel does. So the model and the
// rules lanes writes cannot drift apart, and a rule option the evaluator does not know
// is an error instead of a silent guess.

// Packet is one IP packet at a port's firewall, as bridge netfilter sees it.
type Packet struct {
	// Src and Dst are the IP source and destination, both of one family; the family
	// picks iptables or ip6tables, i.e. the rules of that ethertype.
	Src, Dst netip.Addr
	// SrcMAC is the frame's source MAC. Empty means the port's own MAC for egress (what
	// the VM normally sends) and a MAC of some other machine for ingress.
	SrcMAC string
	// Protocol is the IP protocol number, 1..255 (api.ProtocolNumber of "tcp", "icmp", ...).
	Protocol int
	// SrcPort and DstPort are the TCP, UDP or SCTP ports.
	SrcPort, DstPort int
	// ICMPType and ICMPCode are the message type and code of ICMP (protocol 1) or
	// ICMPv6 (protocol 58).
	ICMPType, ICMPCode int
	// Established says the packet belongs to a connection conntrack already tracks in
	// the port's zone: a reply, a later packet, an ICMP error about it. False means the
	// packet is the first of its connection: a TCP SYN, an SCTP INIT, a UDP datagram,
	// any ICMP message; conntrack itself marks ICMP messages that cannot open a
	// connection (an echo reply, an error about nothing) invalid.
	Established bool
}

// Family is the packet's IP family.
func (p Packet) Family() Family {
	if p.Src.Is4() {
		return V4
	}
	return V6
}

// Reason says why a Verdict came out as it did.
type Reason string

// Reasons of a Verdict.
const (
	// ReasonPortSecurityOff: the port is not filtered at all.
	ReasonPortSecurityOff Reason = "port security off"
	// ReasonRule: a security group rule admitted a new connection (Verdict.RuleID).
	ReasonRule Reason = "security group rule"
	// ReasonEstablished: conntrack knows the connection (a reply, or related to one).
	ReasonEstablished Reason = "known connection"
	// ReasonBuiltin: a rule every filtered port has admitted it: DHCP, IPv6 neighbour
	// discovery and MLD, and outgoing ICMPv6.
	ReasonBuiltin Reason = "built-in rule"
	// ReasonSpoofed: egress with a source IP or MAC that is not the port's (fixed IPs,
	// allowed address pairs, IPv6 link-local of its MACs).
	ReasonSpoofed Reason = "anti-spoofing"
	// ReasonDHCPServer: the VM answered as a DHCP server.
	ReasonDHCPServer Reason = "DHCP server reply from the VM"
	// ReasonRouterAdvert: the VM sent an IPv6 router advertisement.
	ReasonRouterAdvert Reason = "router advertisement from the VM"
	// ReasonInvalid: conntrack cannot place the packet and no rule admitted it.
	ReasonInvalid Reason = "invalid for conntrack"
	// ReasonNoGroup: the port has no security group that exists.
	ReasonNoGroup Reason = "no security group"
	// ReasonNoRule: none of the port's security group rules matches.
	ReasonNoRule Reason = "no rule of its groups matches"
	// ReasonOther: a rule the model has no name for decided; see Verdict.Rule.
	ReasonOther Reason = "other rule"
)

// Verdict is what a port's firewall does with a packet.
type Verdict struct {
	Allowed bool
	Reason  Reason
	// GroupID, GroupName and RuleID name the security group rule that admitted the
	// packet (Reason == ReasonRule). Of equal rules, the first one of the port's
	// groups in order is named: that is the one the renderer writes.
	GroupID, GroupName, RuleID string
	// Chain and Rule are the iptables chain and rule spec that decided, as written.
	Chain, Rule string
}

func (v Verdict) String() string {
	switch {
	case v.Reason == ReasonRule:
		name := v.GroupName
		if name == "" {
			name = v.GroupID
		}
		return fmt.Sprintf("allowed by group %s rule %s", name, v.RuleID)
	case v.Reason == ReasonBuiltin || v.Reason == ReasonOther:
		verb := "dropped"
		if v.Allowed {
			verb = "allowed"
		}
		return fmt.Sprintf("%s (%s: %s)", verb, v.Reason, v.Rule)
	case v.Reason == ReasonSpoofed:
		return "dropped (anti-spoofing: the source IP and MAC are not a pair of the port)"
	case v.Allowed:
		return "allowed (" + string(v.Reason) + ")"
	default:
		return "dropped (" + string(v.Reason) + ")"
	}
}

// NewFirewallPort is the firewall's view of an API port, as Apply and Verdict take it.
func NewFirewallPort(p *api.Port) FirewallPort {
	return FirewallPort{
		ID: p.ID, NetworkID: p.NetworkID, MAC: p.MAC, FixedIPs: p.FixedIPs, AllowedAddressPairs: p.AllowedAddressPairs,
		PortSecurity: p.PortSecurityEnabled(), SecurityGroups: p.SecurityGroups,
	}
}

// Verdict answers what the firewall of port portID does with pkt in direction dir
// (api.Ingress: to the VM, api.Egress: from the VM), exactly as the rules Render
// writes for st do. The port must be in st.Ports; its Zone is not needed.
func (st FirewallState) Verdict(portID, dir string, pkt Packet) (Verdict, error) {
	var port *FirewallPort
	for i := range st.Ports {
		if st.Ports[i].ID == portID {
			port = &st.Ports[i]
		}
	}
	if port == nil {
		return Verdict{}, &api.FieldError{Field: "port", Value: portID, Reason: "not in the firewall state"}
	}
	if dir != api.Ingress && dir != api.Egress {
		return Verdict{}, &api.FieldError{Field: "direction", Value: dir, Reason: "must be ingress or egress"}
	}
	if err := pkt.validate(); err != nil {
		return Verdict{}, err
	}
	// Only this port's chains matter (the dispatch rules of other ports match other
	// devices), so only this port is rendered: a broken record of another port does
	// not make the question unanswerable.
	p := *port
	p.Zone = ZoneStart
	rs, err := Render(FirewallState{Ports: []FirewallPort{p}, Groups: st.Groups, Members: st.Members, ServerLinkLocal: st.ServerLinkLocal})
	if err != nil {
		return Verdict{}, err
	}
	fam := pkt.Family()
	e := &evaluator{
		chains: rs.Tables[TableID{fam, "filter"}].Chains, sets: rs.Sets, pkt: pkt,
		state: pkt.conntrackState(), returned: map[string]string{},
	}
	e.srcMAC = strings.ToLower(pkt.SrcMAC)
	if dir == api.Egress {
		e.physIn, e.physOut = api.TapName(p.ID), api.QvbName(p.ID)
		e.iface = api.QbrName(p.ID)
		if e.srcMAC == "" {
			e.srcMAC = strings.ToLower(p.MAC)
		}
	} else {
		e.physIn, e.physOut = api.QvbName(p.ID), api.TapName(p.ID)
		e.iface = api.QbrName(p.ID)
	}
	if e.srcMAC != "" {
		m, err := net.ParseMAC(e.srcMAC)
		if err != nil {
			return Verdict{}, &api.FieldError{Field: "packet.src_mac", Value: pkt.SrcMAC, Reason: "not a MAC address"}
		}
		e.srcMAC = m.String()
	}
	final, err := e.walk(ChainForward, 0)
	if err != nil {
		return Verdict{}, fmt.Errorf("evaluate the firewall of port %s: %w", p.ID, err)
	}
	return st.classify(&p, dir, fam, e, final), nil
}

func (pkt Packet) validate() error {
	switch {
	case !pkt.Src.IsValid():
		return &api.FieldError{Field: "packet.src", Reason: "missing"}
	case !pkt.Dst.IsValid():
		return &api.FieldError{Field: "packet.dst", Reason: "missing"}
	case pkt.Src.Is4() != pkt.Dst.Is4():
		return &api.FieldError{Field: "packet.dst", Value: pkt.Dst.String(), Reason: "not of the source's family " + pkt.Src.String()}
	case pkt.Protocol < 1 || pkt.Protocol > 255:
		return &api.FieldError{Field: "packet.protocol", Value: strconv.Itoa(pkt.Protocol), Reason: "must be an IP protocol number 1..255"}
	case pkt.SrcPort < 0 || pkt.SrcPort > 65535:
		return &api.FieldError{Field: "packet.src_port", Value: strconv.Itoa(pkt.SrcPort), Reason: "must be within 0..65535"}
	case pkt.DstPort < 0 || pkt.DstPort > 65535:
		return &api.FieldError{Field: "packet.dst_port", Value: strconv.Itoa(pkt.DstPort), Reason: "must be within 0..65535"}
	case pkt.ICMPType < 0 || pkt.ICMPType > 255:
		return &api.FieldError{Field: "packet.icmp_type", Value: strconv.Itoa(pkt.ICMPType), Reason: "must be within 0..255"}
	case pkt.ICMPCode < 0 || pkt.ICMPCode > 255:
		return &api.FieldError{Field: "packet.icmp_code", Value: strconv.Itoa(pkt.ICMPCode), Reason: "must be within 0..255"}
	}
	return nil
}

// Conntrack states as the state match names them.
const (
	ctNew         = "NEW"
	ctEstablished = "ESTABLISHED"
	ctInvalid     = "INVALID"
	ctUntracked   = "UNTRACKED"
)

// conntrackState is what conntrack calls the packet. Without a known connection:
// ICMP requests open one; other ICMP messages are invalid (an error about no known
// connection, a reply to no request); IPv6 neighbour discovery and MLD are never
// tracked; TCP, UDP, SCTP and other protocols open one.
func (pkt Packet) conntrackState() string {
	if pkt.Established {
		return ctEstablished
	}
	v4 := pkt.Family() == V4
	switch pkt.Protocol {
	case 1:
		if !v4 {
			return ctInvalid
		}
		switch pkt.ICMPType {
		case 8, 13, 15, 17: // echo, timestamp, information and address mask requests
			return ctNew
		}
		return ctInvalid
	case 58:
		if v4 {
			return ctInvalid
		}
		switch pkt.ICMPType {
		case 128, 139: // echo request, node information query
			return ctNew
		case 130, 131, 132, 133, 134, 135, 136, 143: // MLD, router and neighbour discovery
			return ctUntracked
		}
		return ctInvalid
	}
	return ctNew
}

// evaluator runs one packet through the chains of one filter table.
type evaluator struct {
	chains          map[string][]string
	sets            map[string]*IPSet
	pkt             Packet
	state           string
	srcMAC          string
	physIn, physOut string
	// iface is the packet's in and out interface as FORWARD sees a bridged packet:
	// the port's qbr.
	iface string
	// final is the rule whose ACCEPT or DROP ended the walk; returned holds, per
	// chain, the rule whose RETURN left it.
	finalChain, finalRule string
	returned              map[string]string
}

// walk evaluates chain and returns "ACCEPT", "DROP" or "" (returned to the caller).
func (e *evaluator) walk(chain string, depth int) (string, error) {
	rules, ok := e.chains[chain]
	if !ok {
		return "", fmt.Errorf("jump to chain %s, which is not rendered", chain)
	}
	if depth > 16 {
		return "", fmt.Errorf("chain %s: jumps nest deeper than 16", chain)
	}
	for _, spec := range rules {
		r, err := parseRule(spec)
		if err != nil {
			return "", fmt.Errorf("chain %s rule %q: %w", chain, spec, err)
		}
		ok, err := e.match(r)
		if err != nil {
			return "", fmt.Errorf("chain %s rule %q: %w", chain, spec, err)
		}
		if !ok {
			continue
		}
		switch r.target {
		case "":
			continue
		case "RETURN":
			e.returned[chain] = spec
			return "", nil
		case "ACCEPT", "DROP", "REJECT":
			e.finalChain, e.finalRule = chain, spec
			if r.target == "ACCEPT" {
				return "ACCEPT", nil
			}
			return "DROP", nil
		default:
			final, err := e.walk(r.target, depth+1)
			if err != nil || final != "" {
				return final, err
			}
		}
	}
	return "", nil
}

// classify names the outcome of a walk.
func (st FirewallState) classify(p *FirewallPort, dir string, fam Family, e *evaluator, final string) Verdict {
	v := Verdict{Allowed: final != "DROP", Chain: e.finalChain, Rule: e.finalRule}
	switch {
	case final == "":
		// Nothing of lanes decided: the packet goes on through FORWARD.
		v.Reason = ReasonOther
	case final == "ACCEPT" && e.finalChain == ChainForward:
		v.Reason = ReasonPortSecurityOff
	case final == "ACCEPT":
		chain := IngressChain(p.ID)
		if dir == api.Egress {
			chain = EgressChain(p.ID)
		}
		ret, ok := e.returned[chain]
		if !ok {
			v.Reason = ReasonOther
			break
		}
		v.Chain, v.Rule = chain, ret
		switch {
		case strings.Contains(ret, cmtKnown):
			v.Reason = ReasonEstablished
		default:
			v.Reason = ReasonBuiltin
			if g, r, ok := st.ruleOf(p, dir, fam, ret); ok {
				v.Reason, v.GroupID, v.GroupName, v.RuleID = ReasonRule, g.ID, g.Name, r.ID
			}
		}
	case e.finalChain == SpoofChain(p.ID):
		v.Reason = ReasonSpoofed
	case e.finalChain == ChainFallback:
		v.Reason = ReasonNoRule
		if !slices.ContainsFunc(p.SecurityGroups, func(id string) bool { return st.Groups[id] != nil }) {
			v.Reason = ReasonNoGroup
		}
	case strings.Contains(e.finalRule, cmtInvalid):
		v.Reason = ReasonInvalid
	case strings.Contains(e.finalRule, cmtDHCPSpf):
		v.Reason = ReasonDHCPServer
	case strings.Contains(e.finalRule, cmtRA):
		v.Reason = ReasonRouterAdvert
	default:
		v.Reason = ReasonOther
	}
	return v
}

// ruleOf finds the security group rule the renderer wrote as spec: the first of the
// port's groups in order, as groupRules keeps the first of equal rules.
func (st FirewallState) ruleOf(p *FirewallPort, dir string, fam Family, spec string) (*api.SecurityGroup, *api.Rule, bool) {
	eth := api.IPv4
	if fam == V6 {
		eth = api.IPv6
	}
	for _, gid := range p.SecurityGroups {
		g := st.Groups[gid]
		if g == nil {
			continue
		}
		for i := range g.Rules {
			r := &g.Rules[i]
			if r.Direction != dir || r.Ethertype != eth {
				continue
			}
			set := ""
			if r.RemoteGroupID != "" {
				set = SetName(fam, r.RemoteGroupID, p.NetworkID)
			}
			if s, err := ruleSpec(fam, r, set); err == nil && s == spec {
				return g, r, true
			}
		}
	}
	return nil, nil, false
}

// parsedRule is one rule spec: its matches and its target.
type parsedRule struct {
	src, dst        *netip.Prefix
	proto           int // 0: any
	modules         []string
	sport, dport    *portSet
	icmp            *icmpMatch
	set             *setMatch
	states          []string
	macSource       string
	physIn, physOut string
	in, out         string // -i, -o
	// notBridged is "! --physdev-is-bridged": the host routes or receives the packet.
	// The model follows bridged packets only, so such a rule never matches.
	notBridged bool
	target     string
}

type portRange struct{ lo, hi int }

type portSet []portRange

func (ps portSet) contains(p int) bool {
	for _, r := range ps {
		if p >= r.lo && p <= r.hi {
			return true
		}
	}
	return false
}

type icmpMatch struct {
	v6             bool
	typ            int
	codeLo, codeHi int
}

type setMatch struct {
	name string
	dst  bool
}

// protoNames are the protocol names iptables accepts after -p and that lanes writes.
var protoNames = map[string]int{"all": 0, "tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "ipv6-icmp": 58, "icmpv6": 58}

// splitSpec splits a rule spec into words; a double-quoted word may hold spaces.
func splitSpec(spec string) ([]string, error) {
	var words []string
	for s := strings.TrimSpace(spec); s != ""; s = strings.TrimLeft(s, " ") {
		if s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return nil, errors.New("unterminated quote")
			}
			words = append(words, s[1:end+1])
			s = s[end+2:]
			continue
		}
		w, rest, _ := strings.Cut(s, " ")
		words = append(words, w)
		s = rest
	}
	return words, nil
}

// parseRule reads the options lanes writes. Anything else is an error: the model must
// not guess what a rule it does not understand does.
func parseRule(spec string) (*parsedRule, error) {
	w, err := splitSpec(spec)
	if err != nil {
		return nil, err
	}
	r := &parsedRule{}
	module := ""
	arg := func(i int) (string, error) {
		if i+1 >= len(w) {
			return "", fmt.Errorf("%s needs a value", w[i])
		}
		return w[i+1], nil
	}
	for i := 0; i < len(w); i++ {
		opt := w[i]
		if opt == "!" {
			if i+1 >= len(w) || w[i+1] != "--physdev-is-bridged" {
				return nil, errors.New("negation is modelled only for --physdev-is-bridged")
			}
			if module != "physdev" {
				return nil, errors.New("--physdev-is-bridged outside -m physdev")
			}
			r.notBridged = true
			i++
			continue
		}
		var val string
		takes := opt != "--physdev-is-bridged" && opt != "--physdev-is-in" && opt != "--physdev-is-out"
		if takes {
			if val, err = arg(i); err != nil {
				return nil, err
			}
			i++
		}
		switch opt {
		case "-s", "-d":
			pfx, err := parsePrefix(val)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", opt, val, err)
			}
			if opt == "-s" {
				r.src = &pfx
			} else {
				r.dst = &pfx
			}
		case "-p":
			n, ok := protoNames[val]
			if !ok {
				if n, err = strconv.Atoi(val); err != nil || n < 0 || n > 255 {
					return nil, fmt.Errorf("-p %s: unknown protocol", val)
				}
			}
			r.proto = n
		case "-m":
			switch val {
			case "tcp", "udp", "sctp", "multiport", "icmp", "icmp6", "set", "state", "conntrack", "mac", "comment", "physdev":
			default:
				return nil, fmt.Errorf("match %s is not modelled", val)
			}
			module = val
			r.modules = append(r.modules, val)
		case "-j":
			r.target = val
			module = "-j"
		case "--dport", "--sport", "--dports", "--sports":
			if module != "tcp" && module != "udp" && module != "sctp" && module != "multiport" {
				return nil, fmt.Errorf("%s outside a port match", opt)
			}
			ps, err := parsePorts(val, module == "multiport")
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", opt, val, err)
			}
			if strings.HasPrefix(opt, "--d") {
				r.dport = &ps
			} else {
				r.sport = &ps
			}
		case "--icmp-type", "--icmpv6-type":
			if (opt == "--icmp-type") != (module == "icmp") || (opt == "--icmpv6-type") != (module == "icmp6") {
				return nil, fmt.Errorf("%s outside its match", opt)
			}
			m, err := parseICMP(val, module == "icmp6")
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", opt, val, err)
			}
			r.icmp = m
		case "--match-set":
			if module != "set" || i+1 >= len(w) {
				return nil, errors.New("--match-set needs a set and src or dst")
			}
			i++
			if w[i] != "src" && w[i] != "dst" {
				return nil, fmt.Errorf("--match-set %s %s: only src or dst is modelled", val, w[i])
			}
			r.set = &setMatch{name: val, dst: w[i] == "dst"}
		case "--state", "--ctstate":
			if (opt == "--state") != (module == "state") || (opt == "--ctstate") != (module == "conntrack") {
				return nil, fmt.Errorf("%s outside its match", opt)
			}
			r.states = strings.Split(val, ",")
			for _, s := range r.states {
				switch s {
				case ctNew, ctEstablished, "RELATED", ctInvalid, ctUntracked:
				default:
					return nil, fmt.Errorf("%s %s: state %s is not modelled", opt, val, s)
				}
			}
			if slices.Contains(r.states, ctEstablished) != slices.Contains(r.states, "RELATED") {
				// Packet.Established stands for both.
				return nil, fmt.Errorf("%s %s: RELATED without ESTABLISHED or the other way round is not modelled", opt, val)
			}
		case "--mac-source":
			if module != "mac" {
				return nil, errors.New("--mac-source outside -m mac")
			}
			m, err := net.ParseMAC(val)
			if err != nil {
				return nil, fmt.Errorf("--mac-source %s: %w", val, err)
			}
			r.macSource = m.String()
		case "--comment":
			if module != "comment" {
				return nil, errors.New("--comment outside -m comment")
			}
		case "--physdev-in", "--physdev-out", "--physdev-is-bridged", "--physdev-is-in", "--physdev-is-out":
			if module != "physdev" {
				return nil, fmt.Errorf("%s outside -m physdev", opt)
			}
			switch opt {
			case "--physdev-in":
				r.physIn = val
			case "--physdev-out":
				r.physOut = val
			}
		case "-i":
			r.in = val
		case "-o":
			r.out = val
		case "--reject-with":
			if r.target != "REJECT" {
				return nil, errors.New("--reject-with without -j REJECT")
			}
		default:
			return nil, fmt.Errorf("option %s is not modelled", opt)
		}
	}
	return r, nil
}

func parsePorts(val string, list bool) (portSet, error) {
	var ps portSet
	parts := []string{val}
	if list {
		parts = strings.Split(val, ",")
	}
	for _, part := range parts {
		lo, hi, isRange := strings.Cut(part, ":")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 || a > 65535 {
			return nil, fmt.Errorf("port %q", lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b > 65535 {
				return nil, fmt.Errorf("port range %q", part)
			}
		}
		ps = append(ps, portRange{a, b})
	}
	return ps, nil
}

// parseICMP reads TYPE or TYPE/CODE. Names are not modelled: lanes writes numbers.
func parseICMP(val string, v6 bool) (*icmpMatch, error) {
	t, c, hasCode := strings.Cut(val, "/")
	typ, err := strconv.Atoi(t)
	if err != nil || typ < 0 || typ > 255 {
		return nil, fmt.Errorf("type %q", t)
	}
	m := &icmpMatch{v6: v6, typ: typ, codeLo: 0, codeHi: 255}
	if hasCode {
		code, err := strconv.Atoi(c)
		if err != nil || code < 0 || code > 255 {
			return nil, fmt.Errorf("code %q", c)
		}
		m.codeLo, m.codeHi = code, code
	}
	return m, nil
}

// match reports whether the packet matches every match of r, with the kernel's
// semantics of each.
func (e *evaluator) match(r *parsedRule) (bool, error) {
	pkt := e.pkt
	if r.src != nil && !prefixMatch(*r.src, pkt.Src) {
		return false, nil
	}
	if r.dst != nil && !prefixMatch(*r.dst, pkt.Dst) {
		return false, nil
	}
	if r.proto != 0 && r.proto != pkt.Protocol {
		return false, nil
	}
	for _, m := range r.modules {
		// A protocol match (-m tcp, -m icmp) only matches its own protocol.
		switch {
		case m == "tcp" && pkt.Protocol != 6, m == "udp" && pkt.Protocol != 17, m == "sctp" && pkt.Protocol != 132,
			m == "icmp" && pkt.Protocol != 1, m == "icmp6" && pkt.Protocol != 58:
			return false, nil
		case m == "multiport" && !slices.Contains([]int{6, 17, 132}, pkt.Protocol):
			return false, nil
		}
	}
	if r.dport != nil && !r.dport.contains(pkt.DstPort) {
		return false, nil
	}
	if r.sport != nil && !r.sport.contains(pkt.SrcPort) {
		return false, nil
	}
	if m := r.icmp; m != nil {
		// IPv4's icmp match takes type 255 as "any type"; icmp6 has no such wildcard.
		wildcard := !m.v6 && m.typ == 255
		if !wildcard && (pkt.ICMPType != m.typ || pkt.ICMPCode < m.codeLo || pkt.ICMPCode > m.codeHi) {
			return false, nil
		}
	}
	if r.set != nil {
		s := e.sets[r.set.name]
		if s == nil {
			return false, fmt.Errorf("set %s is not rendered", r.set.name)
		}
		a := pkt.Src
		if r.set.dst {
			a = pkt.Dst
		}
		if !setContains(s, a) {
			return false, nil
		}
	}
	if r.states != nil && !slices.Contains(r.states, e.state) {
		return false, nil
	}
	if r.macSource != "" && r.macSource != e.srcMAC {
		return false, nil
	}
	if r.physIn != "" && !devMatch(r.physIn, e.physIn) || r.physOut != "" && !devMatch(r.physOut, e.physOut) {
		return false, nil
	}
	if r.in != "" && !devMatch(r.in, e.iface) || r.out != "" && !devMatch(r.out, e.iface) || r.notBridged {
		return false, nil
	}
	// --physdev-is-bridged, -is-in and -is-out hold for every packet of a VM port: its
	// qbr bridges it from one bridge port to another.
	return true, nil
}

func prefixMatch(p netip.Prefix, a netip.Addr) bool {
	return p.Addr().Is4() == a.Is4() && p.Contains(a)
}

// devMatch compares an interface name the way iptables does: a trailing "+" matches
// any name with that prefix.
func devMatch(pattern, name string) bool {
	if p, ok := strings.CutSuffix(pattern, "+"); ok {
		return strings.HasPrefix(name, p)
	}
	return pattern == name
}

// setContains tells whether a hash:net set holds a.
func setContains(s *IPSet, a netip.Addr) bool {
	if (s.Family == V4) != a.Is4() {
		return false
	}
	for _, m := range s.Members {
		p, err := parsePrefix(m)
		if err == nil && p.Contains(a) {
			return true
		}
	}
	return false
}

// GroupState is the firewall state of a set of security groups and their members
// (group -> network -> the fixed IPs of every port of the group on that network),
// without ports: lanesd adds its wired local ports, trace the two ends of a traced
// packet.
func GroupState(groups map[string]api.SecurityGroup, members map[string]map[string][]netip.Addr) FirewallState {
	fs := FirewallState{Groups: map[string]*api.SecurityGroup{}, Members: map[string]map[string][]string{}}
	for id, g := range groups {
		fs.Groups[id] = &g
	}
	for id, byNet := range members {
		fs.Members[id] = map[string][]string{}
		for net, ips := range byNet {
			for _, ip := range ips {
				fs.Members[id][net] = append(fs.Members[id][net], ip.String())
			}
		}
	}
	return fs
}
