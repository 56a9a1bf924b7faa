package api

import "time"

// The local API: JSON over lanesd's root-only unix socket, asked by lanesctl status,
// flows and trace on the same host. These plain structs are its wire format, so the
// CLI links them without linking the daemon.

// StatusReport answers GET /status.
type StatusReport struct {
	// Version is lanesd's build (version, commit, date).
	Version       string          `json:"version,omitempty"`
	Host          string          `json:"host"`
	TunnelIP      string          `json:"tunnel_ip"`
	TunnelType    string          `json:"tunnel_type"`
	Datapath      string          `json:"datapath"`
	StoreRevision int64           `json:"store_revision"`
	StoreRelists  int             `json:"store_relists"`
	Bridges       []BridgeStatus  `json:"bridges"`
	Ports         []PortReport    `json:"ports"`
	Tunnels       []TunnelReport  `json:"tunnels"`
	Networks      []NetworkReport `json:"networks"`
	Started       time.Time       `json:"started"`
	Converged     time.Time       `json:"converged"` // zero until the first reconcile without errors
	LastReconcile ReconcileReport `json:"last_reconcile"`
	// Problems are store records lanesd left out (wholly or in part) that may concern
	// this host.
	Problems []RecordProblem `json:"problems,omitempty"`
	// Ready is /readyz's answer: the store, the lease, the bridges, the last reconcile.
	Ready *Readiness `json:"ready,omitempty"`
	// Warnings are what is wrong although nothing failed: a network MTU above what the
	// underlay carries, a peer that does not accept a network's tunnel type, a peer
	// whose agent is down, a lost lease.
	Warnings []string `json:"warnings,omitempty"`
}

// Readiness is lanesd's readiness, check by check (/readyz and lanesctl status).
type Readiness struct {
	Ready  bool         `json:"ready"`
	Checks []ReadyCheck `json:"checks"`
}

// ReadyCheck is one condition of readiness.
type ReadyCheck struct {
	Name   string `json:"name"` // store, lease, br-int, br-tun, reconcile
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// RecordProblem is a store record lanesd could not use, and why.
type RecordProblem struct {
	Kind  string `json:"kind"` // networks, ports, secgroups, hosts, status
	ID    string `json:"id"`
	Class string `json:"class"`          // undecodable, invalid, conflict, dangling
	Part  string `json:"part,omitempty"` // empty: the whole record is left out
	Error string `json:"error"`
}

// ReconcileReport is the outcome of the last reconcile pass.
type ReconcileReport struct {
	At       time.Time `json:"at"`
	Took     string    `json:"took"`
	Revision int64     `json:"revision"`
	Errors   []string  `json:"errors,omitempty"`
}

// BridgeStatus is one bridge's OpenFlow side.
type BridgeStatus struct {
	Name      string         `json:"name"`
	Connected bool           `json:"connected"`
	Round     uint16         `json:"round"`
	Flows     int            `json:"flows"`
	PerTable  map[string]int `json:"flows_per_table"`
	LastError string         `json:"last_error,omitempty"`
}

// PortReport is one local port.
type PortReport struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Network string `json:"network"`
	Tap     string `json:"tap"`
	VLAN    uint16 `json:"local_vlan"`
	Ofport  int    `json:"ofport"`
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
	// DHCP is the port's DHCP responder's record; nil when lanesd runs none.
	DHCP *DHCPReport `json:"dhcp,omitempty"`
	// DHCPv6 is the record of its router solicitations and DHCPv6, for a port on a
	// network with an IPv6 subnet (Serving always true, Address its IPv6 fixed IP).
	DHCPv6 *DHCPReport `json:"dhcpv6,omitempty"`
}

// TunnelReport is one tunnel port and the host behind it.
type TunnelReport struct {
	Port     string `json:"port"`
	RemoteIP string `json:"remote_ip"`
	PeerHost string `json:"peer_host"`
	// PeerAlive is false while the peer's agent has no lease: its tunnel stays.
	PeerAlive bool `json:"peer_alive"`
	Ofport    int  `json:"ofport"`
}

// NetworkReport is a network with local ports.
type NetworkReport struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	VNI       uint32   `json:"vni"`
	LocalVLAN uint16   `json:"local_vlan"`
	FloodTo   []string `json:"flood_to"` // peer hosts
}

// FlowLine is one installed flow with what it means (GET /flows).
type FlowLine struct {
	Table     uint8  `json:"table"`
	TableName string `json:"table_name"`
	Owner     string `json:"owner"` // e.g. "network net-a", "remote port vm2 on h2", "learned"
	Round     uint16 `json:"round"`
	Flow      string `json:"flow"` // as ovs-ofctl prints it
	// TablePurpose is the table's purpose and miss behaviour from the pipeline's
	// registry; set when flows of one table were asked for.
	TablePurpose string `json:"table_purpose,omitempty"`
}

// TraceRequest asks how a packet from a local port to an IP would travel (GET /trace).
type TraceRequest struct {
	FromPort string `json:"from_port"`
	DstIP    string `json:"dst_ip"`
	Proto    string `json:"proto"`
	DstPort  int    `json:"dst_port"`
	// DHCP traces a DHCPDISCOVER from FromPort instead (DstIP, Proto and DstPort unused).
	DHCP bool `json:"dhcp,omitempty"`
}

// TraceReport explains a packet's path: the firewall verdicts, then every OpenFlow
// table it crossed on br-int and br-tun, named, with the owner of the flow that matched
// and what the actions mean (which network, VNI, tunnel and host).
type TraceReport struct {
	Network     string   `json:"network"`
	VNI         uint32   `json:"vni"`
	Destination string   `json:"destination"` // "local port X", "port X on host H", "unknown"
	Tunnel      string   `json:"tunnel,omitempty"`
	PeerHost    string   `json:"peer_host,omitempty"`
	Steps       []string `json:"steps"`
	Result      string   `json:"result"`
	Raw         string   `json:"raw"` // ofproto/trace output
}

// DHCPReport is what this host's DHCP responder did for one port since lanesd started.
type DHCPReport struct {
	Serving  bool      `json:"serving"` // the port's network serves DHCP and the port has an IPv4 address
	Address  string    `json:"address,omitempty"`
	Answered uint64    `json:"answered"`       // OFFER, ACK and NAK sent
	Refused  uint64    `json:"refused"`        // requests not answered: another MAC, no IPv4, rate limit, ...
	Released uint64    `json:"released"`       // RELEASE and DECLINE received (the address stays the port's)
	Last     string    `json:"last,omitempty"` // e.g. "REQUEST -> ACK 10.0.0.5" or "DISCOVER refused: ..."
	LastAt   time.Time `json:"last_at,omitzero"`
}
