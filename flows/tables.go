// Package flows is lanes' OpenFlow pipeline as pure data: the tables of br-int and
// br-tun, the flows Neutron's Open vSwitch agent installs in them, and the complete
// flow set a host should have for a given desired state. Flows render as the exact
// text `ovs-ofctl -O OpenFlow15 dump-flows --no-stats --no-names` prints, so the
// golden tests read like a dump. Nothing here does I/O; flows/ofbind turns a Flow
// into OpenFlow messages.
package flows

import (
	"slices"

	"github.com/lanes-net/lanes/api"
)

// Bridge names the OVS bridge a flow belongs to.
type Bridge string

// The two bridges lanes programs.
const (
	BrInt Bridge = "br-int"
	BrTun Bridge = "br-tun"
)

// Table numbers are Neutron's (neutron_lib/plugins/ml2/ovs_constants.py), so an
// operator who knows Neutron reads our dumps at once. One namespace for both bridges,
// as in Neutron; only LocalSwitching exists on both.
const (
	LocalSwitching = 0 // both bridges

	// br-tun
	PatchLVToTun  = 2
	GRETunToLV    = 3
	VXLANTunToLV  = 4
	GeneveTunToLV = 6
	LearnFromTun  = 10
	UcastToTun    = 20
	ARPResponder  = 21
	FloodToTun    = 22

	// br-int
	Canary    = 23
	ARPSpoof  = 24
	MACSpoof  = 25
	Transient = 60
)

// Table is one OpenFlow table of a bridge: what it is for and where its flows may
// jump (goto_table). A flow jumping anywhere else is a bug the registry catches.
type Table struct {
	ID      uint8
	Name    string
	Purpose string
	GoesTo  []uint8
}

// brTun is br-tun's pipeline (Neutron's br_tun.py without DVR tables 1 and 9).
var brTun = []Table{
	{LocalSwitching, "LOCAL_SWITCHING", "classify by in_port: patch-int or a tunnel port", []uint8{PatchLVToTun, GRETunToLV, VXLANTunToLV, GeneveTunToLV}},
	{PatchLVToTun, "PATCH_LV_TO_TUN", "from br-int, tagged with the local VLAN: unicast, broadcast ARP or flood", []uint8{UcastToTun, ARPResponder, FloodToTun}},
	{GRETunToLV, "GRE_TUN_TO_LV", "from a GRE tunnel: tun_id -> local VLAN", []uint8{LearnFromTun}},
	{VXLANTunToLV, "VXLAN_TUN_TO_LV", "from a VXLAN tunnel: tun_id -> local VLAN", []uint8{LearnFromTun}},
	{GeneveTunToLV, "GENEVE_TUN_TO_LV", "from a Geneve tunnel: tun_id -> local VLAN", []uint8{LearnFromTun}},
	{LearnFromTun, "LEARN_FROM_TUN", "learn the sender's MAC -> tunnel port into table 20, then to patch-int", nil},
	{UcastToTun, "UCAST_TO_TUN", "known unicast (l2pop priority 2, learned priority 1) -> one tunnel", []uint8{FloodToTun}},
	{ARPResponder, "ARP_RESPONDER", "answer ARP requests for known remote IPs locally", []uint8{FloodToTun}},
	{FloodToTun, "FLOOD_TO_TUN", "broadcast, multicast and unknown unicast -> every tunnel of the network", nil},
}

// brInt is br-int's pipeline in Neutron's pre-Yoga layout: table 0's default and the
// allowed-MAC flows of table 25 go straight to TRANSIENT (60). Yoga inserted the QoS
// rate-limit tables 58/59 and Local-IP tables 30/31 in between; lanes has neither
// feature, and empty pass-through tables would only lengthen every dump and trace.
var brInt = []Table{
	{LocalSwitching, "LOCAL_SWITCHING", "dead VLAN drop, per-port anti-spoofing jumps, default -> NORMAL", []uint8{ARPSpoof, MACSpoof, Transient}},
	{Canary, "CANARY", "one drop flow; its absence tells the controller OVS lost its flows", nil},
	{ARPSpoof, "ARP_SPOOF", "ARP from a port must carry one of its IPs (arp_spa)", []uint8{MACSpoof}},
	{MACSpoof, "MAC_SPOOF", "frames from a port must carry one of its MACs (dl_src)", []uint8{Transient}},
	{Transient, "TRANSIENT", "NORMAL: VLAN-aware MAC learning switch", nil},
}

// Tables lists a bridge's tables in table order.
func Tables(b Bridge) []Table {
	switch b {
	case BrTun:
		return brTun
	case BrInt:
		return brInt
	}
	return nil
}

// LookupTable finds table id of bridge b.
func LookupTable(b Bridge, id uint8) (Table, bool) {
	for _, t := range Tables(b) {
		if t.ID == id {
			return t, true
		}
	}
	return Table{}, false
}

// MayGoTo reports whether flows of table from may jump to table to.
func (t Table) MayGoTo(to uint8) bool { return slices.Contains(t.GoesTo, to) }

// TunTable is br-tun's ingress table for a tunnel type (Neutron's TUN_TABLE).
func TunTable(tunnelType string) (uint8, bool) {
	switch tunnelType {
	case api.TunnelVXLAN:
		return VXLANTunToLV, true
	case api.TunnelGRE:
		return GRETunToLV, true
	case api.TunnelGeneve:
		return GeneveTunToLV, true
	}
	return 0, false
}
