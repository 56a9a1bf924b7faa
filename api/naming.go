package api

import (
	"crypto/sha1"
	"encoding/base32"
	"fmt"
	"net/netip"
	"strings"
)

// DeviceIDLen is how many characters of a port's ID go into its device names, as in
// Neutron: a 3-letter prefix plus 11 characters fills the 14 characters Nova uses.
const DeviceIDLen = 11

func devSuffix(portID string) string {
	if len(portID) > DeviceIDLen {
		return portID[:DeviceIDLen]
	}
	return portID
}

// TapName is the device the VM's hypervisor opens (tapXXXXXXXX-XX).
func TapName(portID string) string { return "tap" + devSuffix(portID) }

// QbrName is the per-port Linux bridge that carries the iptables firewall.
func QbrName(portID string) string { return "qbr" + devSuffix(portID) }

// QvbName is the bridge end of the veth pair.
func QvbName(portID string) string { return "qvb" + devSuffix(portID) }

// QvoName is the OVS end of the veth pair, a port of br-int.
func QvoName(portID string) string { return "qvo" + devSuffix(portID) }

// TunnelPortName is Neutron's tunnel port name, <type>-<hash of the remote address>,
// which fits the 15 characters of a device name for every tunnel type: for IPv4 the
// 8 hex digits of the address (vxlan-c0a80a02), for IPv6 the first 8 characters,
// lower-cased, of the base32 SHA-1 of the address's canonical text form
// (vxlan-cpcmsbju for fd00:31::2), as Neutron's agent hashes addresses that have no
// 8-digit form. The canonical form makes every spelling of one address one port.
func TunnelPortName(tunnelType, remoteIP string) (string, error) {
	a, err := netip.ParseAddr(remoteIP)
	if err != nil || a.Zone() != "" || a.Is4In6() {
		return "", fmt.Errorf("remote_ip %q: not an IPv4 or IPv6 address", remoteIP)
	}
	if a.Is4() {
		b := a.As4()
		return fmt.Sprintf("%s-%02x%02x%02x%02x", tunnelType, b[0], b[1], b[2], b[3]), nil
	}
	sum := sha1.Sum([]byte(a.String()))
	return tunnelType + "-" + strings.ToLower(base32.StdEncoding.EncodeToString(sum[:])[:8]), nil
}

// IP versions of a tunnel's outer header, the family of the hosts' tunnel IPs.
const (
	IPv4Underlay = 4
	IPv6Underlay = 6
)

// IPVersion is 6 for an IPv6 address (not an IPv4-mapped one), else 4.
func IPVersion(a netip.Addr) int {
	if a.Is6() && !a.Is4In6() {
		return IPv6Underlay
	}
	return IPv4Underlay
}

// TunnelOverhead is the bytes a tunnel adds to each frame, when its outer header is
// of IP version ipVersion (IPv6Underlay; anything else means IPv4): the outer IP
// header, the tunnel's own headers and the inner Ethernet header. A VM's MTU is the
// underlay's minus this; a bigger packet is dropped silently.
func TunnelOverhead(tunnelType string, ipVersion int) int {
	outer := 20 // IPv4 header without options
	if ipVersion == IPv6Underlay {
		outer = 40 // IPv6 header without extension headers
	}
	switch tunnelType {
	case TunnelGRE:
		return outer + 8 + 14 // GRE with key 8 + inner Ethernet 14
	default:
		// VXLAN, and Geneve without options: UDP 8 + their header 8 + inner Ethernet 14
		return outer + 8 + 8 + 14
	}
}

// The OVS bridges and patch ports of a host, named as in Neutron so that operators
// find them where they expect.
const (
	BrInt    = "br-int"
	BrTun    = "br-tun"
	BrPhy    = "br-phy"    // the netdev datapath's underlay bridge
	PatchTun = "patch-tun" // br-int's end of the patch pair
	PatchInt = "patch-int" // br-tun's end
)
