package api

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// FieldError names the field that is wrong, the value given and why it is refused.
type FieldError struct {
	Field  string
	Value  string
	Reason string
}

// maxShownValue bounds how much of a refused value an error repeats: a value can be
// megabytes long (a record written around the CLI), and errors end up in logs, port
// statuses and metrics.
const maxShownValue = 80

func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Reason)
	}
	v := e.Value
	if len(v) > maxShownValue {
		return fmt.Sprintf("%s %q... (%d bytes): %s", e.Field, strings.ToValidUTF8(v[:maxShownValue], ""), len(v), e.Reason)
	}
	return fmt.Sprintf("%s %q: %s", e.Field, v, e.Reason)
}

// ErrInvalid is wrapped by every validation error, so callers can tell bad input from
// failures of the store or the host.
var ErrInvalid = errors.New("invalid input")

// Is makes errors.Is(err, ErrInvalid) true for field errors.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

func fieldErr(field, value, format string, args ...any) error {
	return &FieldError{Field: field, Value: value, Reason: fmt.Sprintf(format, args...)}
}

// MaxVNI is the largest 24-bit tunnel ID.
const MaxVNI = 1<<24 - 1

// MaxNameLen bounds names so that they fit in etcd keys, logs and iptables comments.
const MaxNameLen = 64

// MTU bounds of a network. 576 is the smallest datagram every IPv4 host must accept
// (and a DHCP client must be able to receive); 65535 is the largest IPv4 packet and the
// largest MTU Linux gives a tap, bridge or veth. The real ceiling is the underlay MTU
// minus the tunnel overhead, which only the store knows when it creates the network.
const (
	MinMTU = 576
	MaxMTU = 65535
)

// Prefix lengths of a network's CIDR. /30 leaves two usable addresses; /8 is as many
// addresses as a network has MACs (fa:16:3e plus 24 bits).
const (
	MinNetworkPrefix = 8
	MaxNetworkPrefix = 30
)

// Limits per record. They keep one port's transaction well inside etcd's default limit
// of 128 operations and bound the size of every record, so that a record larger than
// any valid one can be refused before it is decoded.
const (
	MaxFixedIPs     = 16
	MaxPortGroups   = 16
	MaxAddressPairs = 16
	MaxRules        = 1000
)

// MaxL4Port is the largest TCP, UDP or SCTP port.
const MaxL4Port = 65535

// reservedV4 are ranges a tenant network cannot use: "this network", loopback,
// link-local (the metadata address lives there), multicast and the reserved class E
// with the limited broadcast address.
var reservedV4 = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ValidateName checks a resource or host name: 1..64 of letters, digits, '.', '_', '-',
// starting with a letter or digit.
func ValidateName(field, name string) error {
	switch {
	case name == "":
		return fieldErr(field, name, "must not be empty")
	case len(name) > MaxNameLen:
		return fieldErr(field, name, "longer than %d characters", MaxNameLen)
	case !nameRe.MatchString(name):
		return fieldErr(field, name, "only letters, digits, '.', '_' and '-' are allowed, starting with a letter or digit")
	}
	return nil
}

// ValidateMAC checks a unicast Ethernet address written as six colon-separated octets.
func ValidateMAC(field, mac string) error {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 || strings.Count(mac, ":") != 5 {
		return fieldErr(field, mac, "not a MAC address (want six octets like fa:16:3e:12:34:56)")
	}
	if hw[0]&1 == 1 {
		return fieldErr(field, mac, "is a multicast address")
	}
	if hw.String() == "00:00:00:00:00:00" {
		return fieldErr(field, mac, "is the zero address")
	}
	return nil
}

// NormalizeMAC returns the lower-case form OVS prints.
func NormalizeMAC(mac string) string {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return mac
	}
	return hw.String()
}

// ValidateNetwork checks a network's own fields. With allocate set, zero VNI and MTU
// are accepted (the store fills them in).
func ValidateNetwork(n *Network, allocate bool) error {
	if err := ValidateName("network.name", n.Name); err != nil {
		return err
	}
	if n.NetworkType != "" {
		if err := ValidateTunnelType("network.network_type", n.NetworkType); err != nil {
			return err
		}
	}
	if n.VNI > MaxVNI || (n.VNI == 0 && !allocate && !n.External) {
		return fieldErr("network.vni", strconv.FormatUint(uint64(n.VNI), 10), "must be within 1..%d", MaxVNI)
	}
	if err := ValidateNetworkCIDR("network.cidr", n.CIDR); err != nil {
		return err
	}
	if n.MTU != 0 && (n.MTU < MinMTU || n.MTU > MaxMTU) {
		return fieldErr("network.mtu", strconv.Itoa(n.MTU), "must be within %d..%d", MinMTU, MaxMTU)
	}
	if n.MTU == 0 && !allocate {
		return fieldErr("network.mtu", "0", "must be set")
	}
	p, _ := netip.ParsePrefix(n.CIDR)          // valid: checked above
	if err := validateDHCP(n, p); err != nil { // dhcp.go
		return err
	}
	return validateExternal(n, p) // l3.go
}

// ValidateNetworkCIDR checks a network's IPv4 CIDR: no host bits, a prefix length
// within MinNetworkPrefix..MaxNetworkPrefix, outside the reserved ranges.
func ValidateNetworkCIDR(field, cidr string) error {
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is4() {
		return fieldErr(field, cidr, "not an IPv4 CIDR like 10.0.0.0/24")
	}
	if p.Masked() != p {
		return fieldErr(field, cidr, "has host bits set (did you mean %s?)", p.Masked())
	}
	if p.Bits() > MaxNetworkPrefix {
		return fieldErr(field, cidr, "too small: a network needs at least a /%d", MaxNetworkPrefix)
	}
	if p.Bits() < MinNetworkPrefix {
		return fieldErr(field, cidr, "too large: a network is at most a /%d", MinNetworkPrefix)
	}
	for _, r := range reservedV4 {
		if p.Overlaps(r) {
			return fieldErr(field, cidr, "overlaps the reserved range %s", r)
		}
	}
	return nil
}

// ValidatePort checks a port's own fields against its network. With allocate set, an
// empty MAC and empty fixed IPs are accepted (the store fills them in).
func ValidatePort(p *Port, n *Network, allocate bool) error {
	if err := ValidateName("port.name", p.Name); err != nil {
		return err
	}
	if p.NetworkID == "" {
		return fieldErr("port.network", "", "must be set")
	}
	if p.Host == "" {
		return fieldErr("port.host", "", "must be set")
	}
	if err := ValidateName("port.host", p.Host); err != nil {
		return err
	}
	if p.MAC != "" || !allocate {
		if err := ValidateMAC("port.mac", p.MAC); err != nil {
			return err
		}
	}
	if len(p.FixedIPs) == 0 && !allocate {
		return fieldErr("port.fixed_ips", "", "must hold at least one address")
	}
	if len(p.FixedIPs) > MaxFixedIPs {
		return fieldErr("port.fixed_ips", "", "at most %d addresses per port", MaxFixedIPs)
	}
	cidr, err := netip.ParsePrefix(n.CIDR)
	if err != nil {
		return fieldErr("network.cidr", n.CIDR, "not a CIDR")
	}
	seen := map[netip.Addr]bool{}
	var v6 *netip.Addr
	for _, s := range p.FixedIPs {
		a, err := netip.ParseAddr(s)
		// Minimal IPv6 support until the full validation of IPv6 subnets lands: one
		// address inside the network's IPv6 subnet.
		if err == nil && a.Is6() && n.IPv6 != nil {
			if pfx, perr := netip.ParsePrefix(n.IPv6.CIDR); perr == nil && pfx.Contains(a) && a.Zone() == "" {
				if v6 != nil {
					return fieldErr("port.fixed_ips", s, "a second IPv6 address (the port has %s)", *v6)
				}
				v6 = &a
				continue
			}
			return fieldErr("port.fixed_ips", s, "outside the network's IPv6 subnet %s", n.IPv6.CIDR)
		}
		if err != nil || !a.Is4() {
			return fieldErr("port.fixed_ips", s, "not an IPv4 address")
		}
		if !cidr.Contains(a) {
			return fieldErr("port.fixed_ips", s, "outside the network's CIDR %s", n.CIDR)
		}
		if a == cidr.Addr() || a == LastAddr(cidr) {
			return fieldErr("port.fixed_ips", s, "is the network or broadcast address of %s", n.CIDR)
		}
		if seen[a] {
			return fieldErr("port.fixed_ips", s, "listed twice")
		}
		if a.String() == n.Gateway && !p.IsRouterInterface() { // dhcp.go: the gateway is every port's router
			return fieldErr("port.fixed_ips", s, "is the network's gateway")
		}
		seen[a] = true
	}
	switch p.DeviceOwner {
	case "":
		if p.DeviceID != "" {
			return fieldErr("port.device_id", p.DeviceID, "set without a device owner")
		}
	case DeviceOwnerRouterInterface:
		if p.DeviceID == "" {
			return fieldErr("port.device_id", "", "a router interface names its router")
		}
	default:
		return fieldErr("port.device_owner", p.DeviceOwner, "must be empty or %s", DeviceOwnerRouterInterface)
	}
	if n.External {
		return fieldErr("port.network", n.Name, "is an external network: it has no VM or router interface ports (use router set-gateway and floating IPs)")
	}
	if len(p.AllowedAddressPairs) > MaxAddressPairs {
		return fieldErr("port.allowed_address_pairs", "", "at most %d pairs per port", MaxAddressPairs)
	}
	for _, ap := range p.AllowedAddressPairs {
		if _, err := ParseIPOrCIDR(ap.IP); err != nil {
			return fieldErr("port.allowed_address_pairs.ip", ap.IP, "not an IPv4 address or CIDR (prefix length 0..32)")
		}
		if ap.MAC != "" {
			if err := ValidateMAC("port.allowed_address_pairs.mac", ap.MAC); err != nil {
				return err
			}
		}
	}
	if len(p.SecurityGroups) > MaxPortGroups {
		return fieldErr("port.security_groups", "", "at most %d groups per port", MaxPortGroups)
	}
	for _, g := range p.SecurityGroups {
		if g == "" {
			return fieldErr("port.security_groups", g, "empty group reference")
		}
	}
	if !p.PortSecurityEnabled() && len(p.SecurityGroups) > 0 {
		return fieldErr("port.security_groups", p.SecurityGroups[0], "must be empty when port security is disabled")
	}
	return nil
}

// ParseIPOrCIDR accepts "10.0.0.5" (as /32) or "10.0.0.0/24" and returns the masked prefix.
func ParseIPOrCIDR(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			return netip.Prefix{}, fmt.Errorf("%q: not an IPv4 CIDR", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, fmt.Errorf("%q: not an IPv4 address", s)
	}
	return netip.PrefixFrom(a, 32), nil
}

// LastAddr is the broadcast address of an IPv4 prefix.
func LastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= (1 << (32 - p.Bits())) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// ValidateHost checks a host registration.
func ValidateHost(h *Host) error {
	if err := ValidateName("host.name", h.Name); err != nil {
		return err
	}
	a, err := netip.ParseAddr(h.TunnelIP)
	if err != nil || !a.Is4() {
		return fieldErr("host.tunnel_ip", h.TunnelIP, "not an IPv4 address")
	}
	if a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return fieldErr("host.tunnel_ip", h.TunnelIP, "not a unicast address other hosts can reach")
	}
	if err := ValidateTunnelType("host.tunnel_type", h.TunnelType); err != nil {
		return err
	}
	for _, t := range h.TunnelTypes {
		if err := ValidateTunnelType("host.tunnel_types", t); err != nil {
			return err
		}
	}
	if len(h.TunnelTypes) > 0 && !h.Accepts(h.TunnelType) {
		return fieldErr("host.tunnel_types", strings.Join(h.TunnelTypes, ","), "must include the host's tunnel type %s", h.TunnelType)
	}
	return nil
}

// ValidateTunnelType accepts vxlan, gre and geneve.
func ValidateTunnelType(field, t string) error {
	switch t {
	case TunnelVXLAN, TunnelGRE, TunnelGeneve:
		return nil
	}
	return fieldErr(field, t, "must be one of vxlan, gre, geneve")
}

// ValidateSecurityGroup checks a group and each of its rules.
func ValidateSecurityGroup(g *SecurityGroup) error {
	if err := ValidateName("sg.name", g.Name); err != nil {
		return err
	}
	if len(g.Rules) > MaxRules {
		return fieldErr("sg.rules", "", "at most %d rules per group", MaxRules)
	}
	for i := range g.Rules {
		if err := ValidateRule(&g.Rules[i]); err != nil {
			return err
		}
	}
	return nil
}

// Protocol numbers with a meaning of their own in rules.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoSCTP   = 132
	ProtoICMPv6 = 58
)

// ProtocolNumber maps a rule protocol to its IP protocol number; 0 means any. A number
// is written in decimal without sign or leading zeros, 1..255: protocol 0 (IPv6
// hop-by-hop) is not something a rule can match, and taking "0" for "any" would turn a
// typo into a rule that allows everything.
func ProtocolNumber(proto string) (int, error) {
	switch strings.ToLower(proto) {
	case "", "any":
		return 0, nil
	case "icmp":
		return ProtoICMP, nil
	case "tcp":
		return ProtoTCP, nil
	case "udp":
		return ProtoUDP, nil
	case "sctp":
		return ProtoSCTP, nil
	case "icmpv6", "ipv6-icmp":
		return ProtoICMPv6, nil
	}
	n, err := strconv.Atoi(proto)
	if err != nil || n < 1 || n > 255 || strconv.Itoa(n) != proto {
		return 0, fmt.Errorf("%q: not tcp, udp, sctp, icmp, icmpv6, any or a number 1..255", proto)
	}
	return n, nil
}

// ParsePortRange parses a destination port "N" or range "N-M" as given on a command
// line. Unlike a Rule, whose zero ports mean any port, it refuses 0: a port that is
// given must be a port.
func ParsePortRange(s string) (lo, hi int, err error) {
	bad := func(reason string) (int, int, error) {
		return 0, 0, fieldErr("rule.port_range", s, "%s", reason)
	}
	a, b, isRange := strings.Cut(s, "-")
	if !isRange {
		b = a
	}
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil || !digits(a) || !digits(b) {
		return bad("want N or N-M, with ports 1..65535")
	}
	if lo < 1 || hi < 1 || lo > MaxL4Port || hi > MaxL4Port {
		return bad("ports must be within 1..65535 (omit the port to allow every port)")
	}
	if lo > hi {
		return bad("the first port of a range must not be above the last")
	}
	return lo, hi, nil
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// ValidateRule checks one security group rule.
func ValidateRule(r *Rule) error {
	if r.Direction != Ingress && r.Direction != Egress {
		return fieldErr("rule.direction", r.Direction, "must be ingress or egress")
	}
	if r.Ethertype != IPv4 && r.Ethertype != IPv6 {
		return fieldErr("rule.ethertype", r.Ethertype, "must be IPv4 or IPv6")
	}
	proto, err := ProtocolNumber(r.Protocol)
	if err != nil {
		return fieldErr("rule.protocol", r.Protocol, "not tcp, udp, sctp, icmp, icmpv6, any or a number 1..255")
	}
	if proto == ProtoICMPv6 && r.Ethertype == IPv4 {
		return fieldErr("rule.protocol", r.Protocol, "ICMPv6 needs ethertype IPv6")
	}
	ported := proto == ProtoTCP || proto == ProtoUDP || proto == ProtoSCTP
	icmp := proto == ProtoICMP || proto == ProtoICMPv6
	if r.PortMin != 0 || r.PortMax != 0 {
		rng := fmt.Sprintf("%d-%d", r.PortMin, r.PortMax)
		switch {
		case !ported:
			return fieldErr("rule.port_range", rng, "ports need protocol tcp, udp or sctp")
		case r.PortMin < 1 || r.PortMax < 1 || r.PortMin > MaxL4Port || r.PortMax > MaxL4Port:
			// Zero only means "any port" when both ends are zero: half a range
			// must not turn into every port.
			return fieldErr("rule.port_range", rng, "must be within 1..65535 with min <= max (both 0 for any port)")
		case r.PortMin > r.PortMax:
			return fieldErr("rule.port_range", rng, "must be within 1..65535 with min <= max")
		}
	}
	if (r.ICMPType != nil || r.ICMPCode != nil) && !icmp {
		return fieldErr("rule.icmp_type", "", "ICMP type and code need protocol icmp or icmpv6")
	}
	if r.ICMPType != nil && (*r.ICMPType < 0 || *r.ICMPType > 255) {
		return fieldErr("rule.icmp_type", strconv.Itoa(*r.ICMPType), "must be within 0..255")
	}
	if r.ICMPCode != nil && (*r.ICMPCode < 0 || *r.ICMPCode > 255 || r.ICMPType == nil) {
		return fieldErr("rule.icmp_code", strconv.Itoa(*r.ICMPCode), "must be within 0..255 and needs an ICMP type")
	}
	if r.RemoteCIDR != "" && r.RemoteGroupID != "" {
		return fieldErr("rule.remote", r.RemoteCIDR, "give a remote CIDR or a remote group, not both")
	}
	if r.RemoteCIDR != "" {
		p, err := netip.ParsePrefix(r.RemoteCIDR)
		if err != nil || p.Addr().Zone() != "" {
			return fieldErr("rule.remote_cidr", r.RemoteCIDR, "not a CIDR (prefix length 0..32 for IPv4, 0..128 for IPv6)")
		}
		if p.Addr().Is4() != (r.Ethertype == IPv4) {
			return fieldErr("rule.remote_cidr", r.RemoteCIDR, "does not match ethertype %s", r.Ethertype)
		}
	}
	return nil
}
