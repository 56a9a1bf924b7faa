package api

import (
	"fmt"
	"net/netip"
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

// TunnelPortName is Neutron's tunnel port name: <type>-<8 hex digits of the remote
// IPv4 address>, e.g. vxlan-c0a80a02.
func TunnelPortName(tunnelType, remoteIP string) (string, error) {
	a, err := netip.ParseAddr(remoteIP)
	if err != nil || !a.Is4() {
		return "", fmt.Errorf("remote_ip %q: not an IPv4 address", remoteIP)
	}
	b := a.As4()
	return fmt.Sprintf("%s-%02x%02x%02x%02x", tunnelType, b[0], b[1], b[2], b[3]), nil
}

// TunnelOverhead is the bytes a tunnel over IPv4 adds to each frame.
func TunnelOverhead(tunnelType string) int {
	switch tunnelType {
	case TunnelGRE:
		return 42 // outer IPv4 20 + GRE with key 8 + inner Ethernet 14
	case TunnelGeneve:
		return 50 // as VXLAN, without options
	default:
		return 50 // outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
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
