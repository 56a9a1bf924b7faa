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

func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Reason)
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
	if n.VNI > MaxVNI || (n.VNI == 0 && !allocate) {
		return fieldErr("network.vni", strconv.FormatUint(uint64(n.VNI), 10), "must be within 1..%d", MaxVNI)
	}
	p, err := netip.ParsePrefix(n.CIDR)
	if err != nil || !p.Addr().Is4() {
		return fieldErr("network.cidr", n.CIDR, "not an IPv4 CIDR like 10.0.0.0/24")
	}
	if p.Masked() != p {
		return fieldErr("network.cidr", n.CIDR, "has host bits set (did you mean %s?)", p.Masked())
	}
	if p.Bits() > 30 {
		return fieldErr("network.cidr", n.CIDR, "too small: a network needs at least a /30")
	}
	if n.MTU != 0 && (n.MTU < 576 || n.MTU > 9000) {
		return fieldErr("network.mtu", strconv.Itoa(n.MTU), "must be within 576..9000")
	}
	if n.MTU == 0 && !allocate {
		return fieldErr("network.mtu", "0", "must be set")
	}
	return validateDHCP(n, p) // dhcp.go
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
	if p.MAC != "" || !allocate {
		if err := ValidateMAC("port.mac", p.MAC); err != nil {
			return err
		}
	}
	if len(p.FixedIPs) == 0 && !allocate {
		return fieldErr("port.fixed_ips", "", "must hold at least one address")
	}
	cidr, err := netip.ParsePrefix(n.CIDR)
	if err != nil {
		return fieldErr("network.cidr", n.CIDR, "not a CIDR")
	}
	seen := map[netip.Addr]bool{}
	for _, s := range p.FixedIPs {
		a, err := netip.ParseAddr(s)
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
		if a.String() == n.Gateway { // dhcp.go: the gateway is every port's router
			return fieldErr("port.fixed_ips", s, "is the network's gateway")
		}
		seen[a] = true
	}
	for _, ap := range p.AllowedAddressPairs {
		if _, err := ParseIPOrCIDR(ap.IP); err != nil {
			return fieldErr("port.allowed_address_pairs.ip", ap.IP, "not an IPv4 address or CIDR")
		}
		if ap.MAC != "" {
			if err := ValidateMAC("port.allowed_address_pairs.mac", ap.MAC); err != nil {
				return err
			}
		}
	}
	for _, g := range p.SecurityGroups {
		if g == "" {
			return fieldErr("port.security_groups", g, "empty group reference")
		}
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
	return ValidateTunnelType("host.tunnel_type", h.TunnelType)
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
	for i := range g.Rules {
		if err := ValidateRule(&g.Rules[i]); err != nil {
			return err
		}
	}
	return nil
}

// ProtocolNumber maps a rule protocol to its IP protocol number; 0 means any.
func ProtocolNumber(proto string) (int, error) {
	switch strings.ToLower(proto) {
	case "", "any":
		return 0, nil
	case "icmp":
		return 1, nil
	case "tcp":
		return 6, nil
	case "udp":
		return 17, nil
	case "icmpv6", "ipv6-icmp":
		return 58, nil
	}
	n, err := strconv.Atoi(proto)
	if err != nil || n < 0 || n > 255 {
		return 0, fmt.Errorf("%q: not tcp, udp, icmp, icmpv6, any or a number 0..255", proto)
	}
	return n, nil
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
		return fieldErr("rule.protocol", r.Protocol, "not tcp, udp, icmp, icmpv6, any or a number 0..255")
	}
	ported := proto == 6 || proto == 17 || proto == 132
	icmp := proto == 1 || proto == 58
	if (r.PortMin != 0 || r.PortMax != 0) && !ported {
		return fieldErr("rule.port_range", fmt.Sprintf("%d-%d", r.PortMin, r.PortMax), "ports need protocol tcp, udp or sctp")
	}
	if r.PortMin < 0 || r.PortMax > 65535 || r.PortMin > r.PortMax && r.PortMax != 0 {
		return fieldErr("rule.port_range", fmt.Sprintf("%d-%d", r.PortMin, r.PortMax), "must be within 1..65535 with min <= max")
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
		if err != nil {
			return fieldErr("rule.remote_cidr", r.RemoteCIDR, "not a CIDR")
		}
		if p.Addr().Is4() != (r.Ethertype == IPv4) {
			return fieldErr("rule.remote_cidr", r.RemoteCIDR, "does not match ethertype %s", r.Ethertype)
		}
	}
	return nil
}
