// Package diag is lanesd's local API: the status, flows and trace reports lanesctl asks
// for over a root-only unix socket, and the checks that compare what the switches hold
// with what lanesd installed. Every report is computed from one Snapshot, the immutable
// outcome of a reconcile, plus the live state of the switches read through OVS's own
// tools.
package diag

import (
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/hostwire"
)

// Snapshot is the outcome of one reconcile. The controller publishes a new one after
// every pass and never changes a published one.
type Snapshot struct {
	Host     Host
	View     *view.View
	VLANs    map[string]uint16         // network ID -> local VLAN
	Ofports  map[string]int            // local port ID -> qvo ofport
	Tunnels  map[string]Tunnel         // by port name (one per peer and tunnel type)
	Statuses map[string]api.PortStatus // local ports, as reported
	// Firewall is the firewall state applied (trace evaluates packets against it).
	Firewall hostwire.FirewallState
	// Flows is the flow set last given to the switches; it names a cookie's owner.
	Flows flows.Set
	// DHCP is the DHCP responder, asked live for its per-port counters (nil: none).
	DHCP DHCPReporter

	Started   time.Time // when this lanesd started
	Converged time.Time // end of the first reconcile without errors
	At        time.Time // start of this reconcile
	Took      time.Duration
	Errors    []string
	// Warnings are what the steps found wrong on the host without failing a pass
	// (e.g. lanes chains under the other iptables backend).
	Warnings []string
}

// Host is this host as lanesd is configured.
type Host struct {
	Name       string
	TunnelIP   string
	TunnelType string
	Datapath   string
	// VMMTU is the largest VM MTU this host's underlay carries (0: unknown).
	VMMTU int
}

// Tunnel is a tunnel port of br-tun.
type Tunnel struct {
	Name     string
	Type     string
	RemoteIP string
	Ofport   int
}
