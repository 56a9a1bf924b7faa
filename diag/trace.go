package diag

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/hostwire"
)

// Trace explains how a packet from a local port to an IP travels: resolve the request
// against the snapshot, build the ofproto/trace flow spec, run it on br-int, annotate
// every table visited, and classify the outcome.
func (s *Server) Trace(ctx context.Context, snap *Snapshot, req api.TraceRequest) (api.TraceReport, error) {
	if req.DHCP {
		return s.traceDHCP(ctx, snap, req) // dhcp.go
	}
	c, err := resolve(snap, req)
	if err != nil {
		return api.TraceReport{}, err
	}
	out, err := s.Tools.Appctl(ctx, "ofproto/trace", api.BrInt, c.spec())
	if err != nil {
		return api.TraceReport{}, err
	}
	steps, datapath := parseTrace(out)
	r := api.TraceReport{Network: c.net.Name, VNI: c.net.VNI, Destination: c.destination(snap.View.Host), Raw: out}
	r.Steps = append(r.Steps, c.preamble(snap)...)
	lines, tunnel, peer := annotate(snap, c, steps)
	r.Steps = append(r.Steps, lines...)
	r.Steps = append(r.Steps, "datapath actions: "+datapath)
	r.Tunnel, r.PeerHost = tunnel, peer
	r.Result = classify(snap, c, datapath, tunnel, peer)
	return r, nil
}

// traceCase is a trace request resolved against the snapshot.
type traceCase struct {
	src    view.Port
	ofport int
	net    api.Network
	srcIP  netip.Addr // src's address of dst's family
	dst    netip.Addr
	proto  int // 1 (icmp), 58 (icmpv6), 6 or 17
	port   int // tcp/udp destination port
	// dstPort is the port of src's network holding dst, nil if none; elsewhere lists
	// ports of other networks holding it.
	dstPort   *api.Port
	elsewhere []string
	// egress and ingress are the firewall verdicts of src and dstPort.
	egress, ingress hostwire.Verdict
}

func resolve(snap *Snapshot, req api.TraceRequest) (traceCase, error) {
	v := snap.View
	var c traceCase
	src, ok := v.LocalPort(req.FromPort)
	if !ok {
		return c, &api.FieldError{Field: "from-port", Value: req.FromPort, Reason: "not a port of this host"}
	}
	c.src = src
	dst, err := netip.ParseAddr(req.DstIP)
	if err != nil || dst.Zone() != "" || dst.Is4In6() {
		return c, &api.FieldError{Field: "dst-ip", Value: req.DstIP, Reason: "not an IPv4 or IPv6 address"}
	}
	c.dst = dst
	proto, err := api.ProtocolNumber(req.Proto)
	ping := api.ProtoICMP
	if dst.Is6() {
		ping = api.ProtoICMPv6
		if proto == api.ProtoICMP {
			proto = ping // "icmp" to an IPv6 address means ping
		}
	}
	if err != nil || (proto != ping && proto != 6 && proto != 17) {
		return c, &api.FieldError{Field: "proto", Value: req.Proto, Reason: "must be icmp, tcp or udp (icmpv6 is icmp to an IPv6 address)"}
	}
	c.proto = proto
	if proto != ping && (req.DstPort < 1 || req.DstPort > 65535) {
		return c, &api.FieldError{Field: "dst-port", Value: strconv.Itoa(req.DstPort), Reason: "tcp and udp need a port 1..65535"}
	}
	c.port = req.DstPort
	if c.ofport = snap.Ofports[src.ID]; c.ofport <= 0 {
		return c, fmt.Errorf("port %s has no ofport on br-int yet", src.Name)
	}
	// The source address of dst's family: the port's fixed IP, or for a link-local
	// destination the guest's own link-local address.
	for _, a := range src.Addrs {
		if a.Is4() == dst.Is4() {
			c.srcIP = a
			break
		}
	}
	if dst.Is6() && dst.IsLinkLocalUnicast() {
		c.srcIP = api.LinkLocal(src.HW)
	}
	if !c.srcIP.IsValid() {
		fam := map[bool]string{true: "IPv4", false: "IPv6"}[dst.Is4()]
		return c, &api.FieldError{Field: "from-port", Value: req.FromPort, Reason: "the port has no " + fam + " address"}
	}
	c.net = v.Networks[src.NetworkID]

	// Where the store says dst lives: a port of the same network, or of another.
	for _, p := range v.State.Ports {
		if !slices.Contains(p.FixedIPs, dst.String()) && !isLinkLocalOf(dst, p.MAC) {
			continue
		}
		if p.NetworkID == src.NetworkID {
			c.dstPort = p
			continue
		}
		n := v.State.Networks[p.NetworkID]
		c.elsewhere = append(c.elsewhere, fmt.Sprintf("%s in network %s (VNI %d)", p.Name, n.Name, n.VNI))
	}
	slices.Sort(c.elsewhere)
	if c.dstPort != nil {
		if c.egress, c.ingress, err = verdicts(v, src.Port, *c.dstPort, c.packet()); err != nil {
			return c, err
		}
	}
	return c, nil
}

// packet is the traced packet as the firewall model sees it: the first packet of a
// new connection, an echo request for icmp (what ofproto/trace is given).
func (c traceCase) packet() hostwire.Packet {
	pkt := hostwire.Packet{Src: c.srcIP, Dst: c.dst, Protocol: c.proto, DstPort: c.port}
	switch c.proto {
	case api.ProtoICMP:
		pkt.ICMPType = 8
	case api.ProtoICMPv6:
		pkt.ICMPType = 128
	}
	return pkt
}

// isLinkLocalOf reports whether a is the EUI-64 link-local address of mac, the one
// every guest holds besides its fixed IPs.
func isLinkLocalOf(a netip.Addr, mac string) bool {
	if !a.Is6() || !a.IsLinkLocalUnicast() {
		return false // no MAC to parse for every port of the store
	}
	hw, err := net.ParseMAC(mac)
	return err == nil && len(hw) == 6 && a == api.LinkLocal(hw)
}

// verdicts asks the firewall model what src's egress and dst's ingress do with pkt.
// dst may live on another host: its rules are rendered here from the same groups.
func verdicts(v *view.View, src, dst api.Port, pkt hostwire.Packet) (egress, ingress hostwire.Verdict, err error) {
	fs := hostwire.GroupState(v.Groups, v.Members)
	fs.Ports = []hostwire.FirewallPort{hostwire.NewFirewallPort(&src), hostwire.NewFirewallPort(&dst)}
	if egress, err = fs.Verdict(src.ID, api.Egress, pkt); err != nil {
		return egress, ingress, fmt.Errorf("firewall model, egress of %s: %w", src.Name, err)
	}
	if ingress, err = fs.Verdict(dst.ID, api.Ingress, pkt); err != nil {
		return egress, ingress, fmt.Errorf("firewall model, ingress of %s: %w", dst.Name, err)
	}
	return egress, ingress, nil
}

// dstMAC is where the traced frame goes: the destination port's MAC, or where the VM
// asks for an address nobody has: broadcast (ARP), or the solicited-node multicast
// group of the address (IPv6 neighbour discovery).
func (c traceCase) dstMAC() string {
	switch {
	case c.dstPort != nil:
		return c.dstPort.MAC
	case c.dst.Is6():
		b := c.dst.As16()
		return fmt.Sprintf("33:33:ff:%02x:%02x:%02x", b[13], b[14], b[15])
	}
	return "ff:ff:ff:ff:ff:ff"
}

func (c traceCase) destination(self string) string {
	switch {
	case c.dstPort == nil:
		return "unknown"
	case c.dstPort.Host == self:
		return "local port " + c.dstPort.Name
	}
	return fmt.Sprintf("port %s on host %s", c.dstPort.Name, c.dstPort.Host)
}

// spec is the ofproto/trace flow: the packet as the VM sends it into br-int.
func (c traceCase) spec() string {
	if c.dst.Is6() {
		spec := fmt.Sprintf("in_port=%d,dl_src=%s,dl_dst=%s,ipv6_src=%s,ipv6_dst=%s", c.ofport, c.src.MAC, c.dstMAC(), c.srcIP, c.dst)
		switch c.proto {
		case api.ProtoICMPv6:
			return "icmp6," + spec + ",icmpv6_type=128"
		case 6:
			return "tcp6," + spec + ",tp_dst=" + strconv.Itoa(c.port)
		}
		return "udp6," + spec + ",tp_dst=" + strconv.Itoa(c.port)
	}
	spec := fmt.Sprintf("in_port=%d,dl_src=%s,dl_dst=%s,nw_src=%s,nw_dst=%s", c.ofport, c.src.MAC, c.dstMAC(), c.srcIP, c.dst)
	switch c.proto {
	case api.ProtoICMP:
		return "icmp," + spec + ",icmp_type=8"
	case 6:
		return "tcp," + spec + ",tp_dst=" + strconv.Itoa(c.port)
	}
	return "udp," + spec + ",tp_dst=" + strconv.Itoa(c.port)
}

// preamble is what the trace says before the tables: the source, the destination and
// the firewall verdicts.
func (c traceCase) preamble(snap *Snapshot) []string {
	n := c.net
	lines := []string{fmt.Sprintf("from %s (%s, %s) on network %s: VNI %d, local VLAN %d on this host, %s ofport %d",
		c.src.Name, c.src.MAC, strings.Join(c.src.FixedIPs, ","), n.Name, n.VNI, snap.VLANs[n.ID], api.QvoName(c.src.ID), c.ofport)}
	if c.dstPort == nil {
		msg := fmt.Sprintf("no port of network %s has %s: the VM's ARP request gets no answer (traced as a broadcast)", n.Name, c.dst)
		if c.dst.Is6() {
			msg = fmt.Sprintf("no port of network %s has %s: the VM's neighbour solicitation gets no answer (traced to its solicited-node group)", n.Name, c.dst)
		}
		if len(c.elsewhere) > 0 {
			msg += "; " + c.dst.String() + " is " + strings.Join(c.elsewhere, ", ") + ": another tenant network, isolated by its own VNI"
		}
		return append(lines, msg)
	}
	return append(lines, fmt.Sprintf("%s is %s (%s)", c.dst, c.destination(snap.View.Host), c.dstMAC()),
		"firewall egress of "+c.src.Name+": "+c.egress.String(),
		"firewall ingress of "+c.dstPort.Name+": "+c.ingress.String())
}

// traceStep is one table visit in ofproto/trace output.
type traceStep struct {
	bridge  string
	table   int
	match   string
	cookie  flows.Cookie
	actions []string
}

var (
	bridgeRe = regexp.MustCompile(`^bridge\("([^"]+)"\)`)
	tableRe  = regexp.MustCompile(`^\s*(\d+)\. (.*?),? ?priority \d+(?:, cookie (0x[0-9a-f]+))?`)
)

// parseTrace splits ofproto/trace output into table visits and the datapath actions.
func parseTrace(out string) (steps []traceStep, datapath string) {
	bridge := ""
	for _, line := range strings.Split(out, "\n") {
		switch m := tableRe.FindStringSubmatch(line); {
		case bridgeRe.MatchString(line):
			bridge = bridgeRe.FindStringSubmatch(line)[1]
		case m != nil:
			n, _ := strconv.Atoi(m[1])
			c, _ := strconv.ParseUint(strings.TrimPrefix(m[3], "0x"), 16, 64)
			steps = append(steps, traceStep{bridge: bridge, table: n, match: m[2], cookie: flows.Cookie(c)})
		case strings.HasPrefix(line, "Datapath actions:"):
			datapath = strings.TrimSpace(strings.TrimPrefix(line, "Datapath actions:"))
		case len(steps) > 0 && strings.HasPrefix(line, "    ") && strings.TrimSpace(line) != "":
			s := &steps[len(steps)-1]
			s.actions = append(s.actions, strings.TrimSpace(line))
		}
	}
	return steps, datapath
}

// annotate names every table visited, the owner of the flow that matched and, for an
// output to a tunnel, the host and VNI behind it. It returns the tunnel the packet
// left by, if any, and that tunnel's peer host.
func annotate(snap *Snapshot, c traceCase, steps []traceStep) (lines []string, tunnel, peer string) {
	byOfport := map[string]Tunnel{}
	for _, t := range snap.Tunnels {
		byOfport[strconv.Itoa(t.Ofport)] = t
	}
	for _, s := range steps {
		b := flows.Bridge(s.bridge)
		t, known := flows.LookupTable(b, uint8(s.table))
		line := fmt.Sprintf("%s table %d %s", s.bridge, s.table, t.Name)
		if !known {
			line = fmt.Sprintf("%s table %d (not lanes' pipeline)", s.bridge, s.table)
		}
		if s.match != "" {
			line += " [" + s.match + "]"
		}
		if s.cookie != 0 {
			line += " (" + ownerName(snap, b, s.cookie) + ")"
		}
		line += ": " + strings.Join(s.actions, "; ")
		for _, act := range s.actions {
			port, ok := strings.CutPrefix(act, "output:")
			if !ok || s.bridge != api.BrTun {
				continue
			}
			if t, ok := byOfport[port]; ok {
				tunnel, peer = t.Name, snap.View.Peers[t.RemoteIP].Name
				line += fmt.Sprintf(" => %s to host %s (%s) with VNI %d (network %s)", tunnel, peer, t.RemoteIP, c.net.VNI, c.net.Name)
			}
		}
		lines = append(lines, line)
	}
	return lines, tunnel, peer
}

// classify says what happened to the packet, in one line.
func classify(snap *Snapshot, c traceCase, datapath, tunnel, peer string) string {
	switch {
	case c.dstPort == nil:
		return fmt.Sprintf("unreachable: %s is not on network %s", c.dst, c.net.Name)
	case datapath == "drop":
		return "dropped by the pipeline"
	case !c.egress.Allowed:
		return "dropped by the firewall, egress of " + c.src.Name + ": " + c.egress.String()
	case !c.ingress.Allowed:
		return "dropped by the firewall, ingress of " + c.dstPort.Name + ": " + c.ingress.String()
	case c.dstPort.Host == snap.View.Host:
		r := "delivered on this host by br-int (NORMAL) to " + c.destination(snap.View.Host)
		if tunnel != "" {
			r += " (br-int had not learned its MAC yet, so the frame was also flooded to the tunnels of VLAN " + strconv.Itoa(int(snap.VLANs[c.net.ID])) + ")"
		}
		return r
	case tunnel != "" && peer == c.dstPort.Host:
		return fmt.Sprintf("leaves through %s to host %s, VNI %d (network %s)", tunnel, peer, c.net.VNI, c.net.Name)
	}
	return fmt.Sprintf("not sent to host %s: this host has no tunnel to it (is it alive? see lanesctl host list)", c.dstPort.Host)
}
