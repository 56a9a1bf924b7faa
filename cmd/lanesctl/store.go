package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/store"
	"github.com/spf13/pflag"
)

// networkSpec parses network create's arguments. A number given on the command line
// reaches validation as it is: zero and negative values are refused, never taken as
// "the default".
func (g *globals) networkSpec(args []string) (store.NetworkSpec, error) {
	fs := newFlagSet("network create")
	cidr := fs.String("cidr", "", "IPv4 subnet `CIDR` of the network (may be omitted with --ipv6-cidr)")
	vni := fs.Int("vni", 0, "tunnel ID 1..16777215 (default: the lowest free)")
	mtu := fs.Int("mtu", 0, "MTU of the VMs' devices (default: underlay MTU minus the tunnel overhead)")
	underlay := fs.Int("underlay-mtu", store.DefaultUnderlayMTU, "MTU of the hosts' underlay")
	ntype := fs.String("type", api.TunnelVXLAN, "tunnel `TYPE` carrying the network between hosts: vxlan, gre or geneve (Neutron's network_type)")
	dhcp := newDHCPFlags(fs, false)
	v6 := newIPv6Flags(fs)
	ext := newExternalFlags(fs) // router.go
	pos, err := g.parse(fs, args, "NAME")
	if err != nil {
		return store.NetworkSpec{}, err
	}
	dn := api.Network{Name: pos[0]}
	if err := dhcp.apply(&dn); err != nil {
		return store.NetworkSpec{}, err
	}
	if err := v6.apply(&dn); err != nil {
		return store.NetworkSpec{}, err
	}
	spec := store.NetworkSpec{Name: pos[0], CIDR: *cidr, MTU: *mtu, UnderlayMTU: *underlay, TunnelType: *ntype, Gateway: dn.Gateway, DHCP: dn.DHCP,
		IPv6: dn.IPv6}
	if err := ext.apply(fs, &spec); err != nil {
		return spec, err
	}
	if given(fs, "vni") {
		// Checked before the conversion, which would wrap 4294967297 to 1.
		if *vni < 0 || *vni > api.MaxVNI {
			return spec, &api.FieldError{Field: "network.vni", Value: strconv.Itoa(*vni), Reason: fmt.Sprintf("must be within 1..%d", api.MaxVNI)}
		}
		v := uint32(*vni)
		spec.VNI = &v
	}
	// NetworkSpec takes 0 for "compute it"; a 0 typed on the command line is a mistake.
	if given(fs, "mtu") && *mtu == 0 {
		return spec, &api.FieldError{Field: "network.mtu", Value: "0", Reason: fmt.Sprintf("must be within %d..%d (omit --mtu for the underlay MTU minus the tunnel overhead)", api.MinMTU, api.MaxMTU)}
	}
	if given(fs, "underlay-mtu") && *underlay == 0 {
		return spec, &api.FieldError{Field: "network.underlay_mtu", Value: "0", Reason: fmt.Sprintf("must be a positive MTU (omit --underlay-mtu for %d)", store.DefaultUnderlayMTU)}
	}
	return spec, nil
}

// given reports whether the flag was set on the command line.
func given(fs *pflag.FlagSet, name string) bool { return fs.Changed(name) }

func (c *cli) networkCreate(args []string) error {
	spec, err := c.networkSpec(args)
	if err != nil {
		return err
	}
	n, err := c.st.CreateNetwork(c.ctx, spec)
	if err != nil {
		return err
	}
	return c.emitNetworks([]api.Network{n})
}

func (c *cli) networkList(args []string) error {
	if _, err := c.parse(newFlagSet("network list"), args); err != nil {
		return err
	}
	ns, err := c.st.ListNetworks(c.ctx)
	if err != nil {
		return err
	}
	return c.emitNetworks(ns)
}

func (c *cli) networkShow(args []string) error {
	pos, err := c.parse(newFlagSet("network show"), args, "NETWORK")
	if err != nil {
		return err
	}
	n, err := c.st.GetNetwork(c.ctx, pos[0])
	if err != nil {
		return err
	}
	return c.emitNetworks([]api.Network{n})
}

func (c *cli) networkDelete(args []string) error {
	pos, err := c.parse(newFlagSet("network delete"), args, "NETWORK")
	if err != nil {
		return err
	}
	n, err := c.st.GetNetwork(c.ctx, pos[0])
	if err != nil {
		return err
	}
	if err := c.st.DeleteNetwork(c.ctx, n.ID); err != nil {
		return err
	}
	return c.deleted("network", n.Name, n.ID)
}

// addressPairs parses --allowed-address IP[,MAC] values.
func addressPairs(vals []string) []api.AddressPair {
	var out []api.AddressPair
	for _, v := range vals {
		ip, mac, _ := strings.Cut(v, ",")
		out = append(out, api.AddressPair{IP: ip, MAC: mac})
	}
	return out
}

func (c *cli) portCreate(args []string) error {
	fs := newFlagSet("port create")
	network := fs.String("network", "", "`NETWORK` name or ID")
	host := fs.String("host", "", "`HOST` the VM runs on")
	mac := fs.String("mac", "", "`MAC` (default: allocated, fa:16:3e:xx:xx:xx)")
	var ips, sgs, pairs list
	fs.Var(&ips, "ip", "fixed `IP`: at most one IPv4 and one IPv6 address (repeatable; default: one per subnet of the network)")
	fs.Var(&sgs, "sg", "security group `SG`, name or ID (repeatable)")
	fs.Var(&pairs, "allowed-address", "extra `IP[,MAC]` or CIDR the VM may send from (repeatable)")
	noSec := fs.Bool("no-port-security", false, "no anti-spoofing and no security groups")
	noSG := fs.Bool("no-sg", false, "no security group (default: the group named default)")
	wait := fs.Bool("wait", false, "return once the host reports the port ACTIVE")
	timeout := fs.Duration("timeout", 30*time.Second, "how long --wait waits")
	seed := newSeedFlags(fs)
	pos, err := c.parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	p := api.Port{Name: pos[0], NetworkID: *network, Host: *host, MAC: *mac, FixedIPs: ips,
		SecurityGroups: sgs, AllowedAddressPairs: addressPairs(pairs)}
	if *noSec {
		off := false
		p.PortSecurity = &off
	}
	var opts []store.CreatePortOption
	if *noSG {
		opts = append(opts, store.NoSecurityGroups)
	}
	p, err = c.st.CreatePort(c.ctx, p, opts...)
	if err != nil {
		return err
	}
	status := ""
	if *wait {
		ctx, cancel := context.WithTimeout(c.ctx, *timeout)
		defer cancel()
		st, err := c.st.WaitPortActive(ctx, p.ID)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("port %s created (id %s) but host %s did not report it ACTIVE within %s", p.Name, p.ID, p.Host, *timeout)
			}
			return fmt.Errorf("port %s created (id %s): %w", p.Name, p.ID, err)
		}
		status = st.State
	}
	n, nerr := c.st.GetNetwork(c.ctx, p.NetworkID)
	seedPath := ""
	if seed.wanted() && nerr != nil {
		return fmt.Errorf("port %s created (id %s), no seed written: %w", p.Name, p.ID, nerr)
	}
	if seed.wanted() {
		if seedPath, err = seed.write(p, n); err != nil {
			return fmt.Errorf("port %s created (id %s): %w", p.Name, p.ID, err)
		}
	}
	tap := api.TapName(p.ID)
	qemu := qemuLine(p, n.MTU, seedPath) // seed.go
	if c.structured() {
		return c.emit(struct {
			api.Port
			Tap    string `json:"tap"`
			Qemu   string `json:"qemu"`
			Seed   string `json:"seed,omitempty"`
			Status string `json:"status,omitempty"`
		}{p, tap, qemu, seedPath, status}, nil)
	}
	fmt.Fprintf(c.out, "port %s id %s mac %s ips %s on host %s", p.Name, p.ID, p.MAC, strings.Join(p.FixedIPs, ","), p.Host)
	if status != "" {
		fmt.Fprintf(c.out, " %s", status)
	}
	fmt.Fprintf(c.out, "\ntap: %s\nqemu: %s\n", tap, qemu)
	if seedPath != "" {
		fmt.Fprintf(c.out, "seed: %s\n", seedPath)
	}
	return nil
}

// portView is a port with its reported status, as list and show print it.
type portView struct {
	api.Port
	Status *api.PortStatus `json:"status,omitempty"`
}

func (c *cli) emitPorts(ps []api.Port) error {
	statuses := map[string]api.PortStatus{}
	if all, err := c.st.ListPortStatus(c.ctx); err == nil {
		for _, st := range all {
			statuses[st.PortID] = st
		}
	}
	views := make([]portView, 0, len(ps))
	for _, p := range ps {
		v := portView{Port: p}
		if st, ok := statuses[p.ID]; ok {
			v.Status = &st
		}
		views = append(views, v)
	}
	nets := map[string]string{}
	if ns, err := c.st.ListNetworks(c.ctx); err == nil {
		for _, n := range ns {
			nets[n.ID] = n.Name
		}
	}
	return c.emit(views, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "NAME\tID\tNETWORK\tHOST\tMAC\tIPS\tTAP\tSTATUS")
		for _, v := range views {
			state := "-"
			if v.Status != nil {
				state = v.Status.State
				if v.Status.Reason != "" {
					state += " (" + v.Status.Reason + ")"
				}
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.ID, nets[v.NetworkID], v.Host, v.MAC,
				strings.Join(v.FixedIPs, ","), api.TapName(v.ID), state)
		}
	})
}

func (c *cli) portList(args []string) error {
	fs := newFlagSet("port list")
	network := fs.String("network", "", "only ports of this `NETWORK` (name or ID)")
	host := fs.String("host", "", "only ports of this `HOST`")
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	netID := ""
	if *network != "" {
		n, err := c.st.GetNetwork(c.ctx, *network)
		if err != nil {
			return err
		}
		netID = n.ID
	}
	all, err := c.st.ListPorts(c.ctx)
	if err != nil {
		return err
	}
	var ps []api.Port
	for _, p := range all {
		if (netID == "" || p.NetworkID == netID) && (*host == "" || p.Host == *host) {
			ps = append(ps, p)
		}
	}
	return c.emitPorts(ps)
}

func (c *cli) portShow(args []string) error {
	pos, err := c.parse(newFlagSet("port show"), args, "PORT")
	if err != nil {
		return err
	}
	p, err := c.st.GetPort(c.ctx, pos[0])
	if err != nil {
		return err
	}
	return c.emitPorts([]api.Port{p})
}

func (c *cli) portUpdate(args []string) error {
	fs := newFlagSet("port update")
	host := fs.String("host", "", "move the port to this `HOST`")
	var sgs, pairs list
	fs.Var(&sgs, "sg", "replace the security groups with `SG` (repeatable)")
	noSG := fs.Bool("no-sg", false, "remove every security group")
	fs.Var(&pairs, "allowed-address", "replace the allowed address pairs with `IP[,MAC]` (repeatable; \"\" clears them)")
	clearPairs := fs.Bool("clear-allowed-address", false, "remove every allowed address pair")
	var ips list
	fs.Var(&ips, "ip", "replace the fixed IPs with `IP`: at most one IPv4 and one IPv6 address (repeatable; \"\" allocates them again)")
	mac := fs.String("mac", "", "change the `MAC`")
	portSec := fs.String("port-security", "", "`BOOL`: true or false")
	pos, err := c.parse(fs, args, "PORT")
	if err != nil {
		return err
	}
	var sec *bool
	if *portSec != "" {
		b, err := strconv.ParseBool(*portSec)
		if err != nil {
			return &api.FieldError{Field: "port.port_security", Value: *portSec, Reason: "must be true or false"}
		}
		sec = &b
	}
	p, err := c.st.UpdatePort(c.ctx, pos[0], func(p *api.Port) error {
		if *host != "" {
			p.Host = *host
		}
		if *noSG {
			p.SecurityGroups = nil
		}
		if len(sgs) > 0 {
			p.SecurityGroups = sgs
		}
		switch {
		case *clearPairs || len(pairs) == 1 && pairs[0] == "":
			p.AllowedAddressPairs = nil
		case len(pairs) > 0:
			p.AllowedAddressPairs = addressPairs(pairs)
		}
		switch {
		case len(ips) == 1 && ips[0] == "":
			p.FixedIPs = nil // the store allocates the lowest free address
		case len(ips) > 0:
			p.FixedIPs = ips
		}
		if given(fs, "mac") {
			p.MAC = *mac
		}
		if sec != nil {
			p.PortSecurity = sec
		}
		return nil
	})
	if err != nil {
		return err
	}
	return c.emitPorts([]api.Port{p})
}

func (c *cli) portDelete(args []string) error {
	pos, err := c.parse(newFlagSet("port delete"), args, "PORT")
	if err != nil {
		return err
	}
	p, err := c.st.GetPort(c.ctx, pos[0])
	if err != nil {
		return err
	}
	if err := c.st.DeletePort(c.ctx, p.ID); err != nil {
		return err
	}
	return c.deleted("port", p.Name, p.ID)
}

func (c *cli) sgCreate(args []string) error {
	fs := newFlagSet("sg create")
	def := fs.Bool("default-rules", false, "start with Neutron's default rules: egress any, ingress from members of this group")
	pos, err := c.parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	g := api.SecurityGroup{Name: pos[0]}
	if *def {
		g = store.DefaultSecurityGroup(pos[0])
	}
	g, err = c.st.CreateSecurityGroup(c.ctx, g)
	if err != nil {
		return err
	}
	return c.emitGroups([]api.SecurityGroup{g})
}

func (c *cli) emitGroups(gs []api.SecurityGroup) error {
	names := map[string]string{}
	if all, err := c.st.ListSecurityGroups(c.ctx); err == nil {
		for _, g := range all {
			names[g.ID] = g.Name
		}
	}
	return c.emit(gs, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "GROUP\tRULE ID\tDIRECTION\tETHERTYPE\tPROTOCOL\tPORTS/ICMP\tREMOTE")
		for _, g := range gs {
			fmt.Fprintf(w, "%s (%s)\t\t\t\t\t\t\n", g.Name, g.ID)
			for _, r := range g.Rules {
				fmt.Fprintf(w, "\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Direction, r.Ethertype, orAny(r.Protocol), ruleRange(r), ruleRemote(r, names))
			}
		}
	})
}

func orAny(s string) string {
	if s == "" {
		return "any"
	}
	return s
}

func ruleRange(r api.Rule) string {
	switch {
	case r.PortMin != 0 && r.PortMin == r.PortMax:
		return strconv.Itoa(r.PortMin)
	case r.PortMin != 0 || r.PortMax != 0:
		return fmt.Sprintf("%d-%d", r.PortMin, r.PortMax)
	case r.ICMPType != nil && r.ICMPCode != nil:
		return fmt.Sprintf("type %d code %d", *r.ICMPType, *r.ICMPCode)
	case r.ICMPType != nil:
		return fmt.Sprintf("type %d", *r.ICMPType)
	}
	return "any"
}

func ruleRemote(r api.Rule, names map[string]string) string {
	switch {
	case r.RemoteGroupID != "":
		if n, ok := names[r.RemoteGroupID]; ok {
			return "group " + n
		}
		return "group " + r.RemoteGroupID
	case r.RemoteCIDR != "":
		return r.RemoteCIDR
	}
	return "any"
}

func (c *cli) sgList(args []string) error {
	if _, err := c.parse(newFlagSet("sg list"), args); err != nil {
		return err
	}
	gs, err := c.st.ListSecurityGroups(c.ctx)
	if err != nil {
		return err
	}
	return c.emitGroups(gs)
}

func (c *cli) sgShow(args []string) error {
	pos, err := c.parse(newFlagSet("sg show"), args, "SG")
	if err != nil {
		return err
	}
	g, err := c.st.GetSecurityGroup(c.ctx, pos[0])
	if err != nil {
		return err
	}
	return c.emitGroups([]api.SecurityGroup{g})
}

func (c *cli) sgDelete(args []string) error {
	pos, err := c.parse(newFlagSet("sg delete"), args, "SG")
	if err != nil {
		return err
	}
	g, err := c.st.GetSecurityGroup(c.ctx, pos[0])
	if err != nil {
		return err
	}
	if err := c.st.DeleteSecurityGroup(c.ctx, g.ID); err != nil {
		return err
	}
	return c.deleted("security group", g.Name, g.ID)
}

func (c *cli) sgRuleDelete(args []string) error {
	pos, err := c.parse(newFlagSet("sg rule delete"), args, "SG", "RULE_ID")
	if err != nil {
		return err
	}
	g, err := c.st.GetSecurityGroup(c.ctx, pos[0])
	if err != nil {
		return err
	}
	if err := c.st.DeleteRule(c.ctx, g.ID, pos[1]); err != nil {
		return err
	}
	if c.structured() {
		return c.emit(map[string]string{"deleted": "rule", "id": pos[1], "security_group": g.Name, "security_group_id": g.ID}, nil)
	}
	fmt.Fprintf(c.out, "deleted rule %s of security group %s (%s)\n", pos[1], g.Name, g.ID)
	return nil
}

// deleted reports a delete: one line, or with -o json|yaml {kind, name, id}, so that
// scripts see what went.
func (c *cli) deleted(kind, name, id string) error {
	if c.structured() {
		return c.emit(map[string]string{"deleted": kind, "name": name, "id": id}, nil)
	}
	fmt.Fprintf(c.out, "deleted %s %s (%s)\n", kind, name, id)
	return nil
}

// ruleFromArgs parses sg rule add's arguments into the group reference and the rule.
// Numbers given reach validation as they are: --port 0 or --icmp-type -1 are refused,
// not taken as "any".
func (g *globals) ruleFromArgs(args []string) (string, api.Rule, error) {
	fs := newFlagSet("sg rule add")
	r := api.Rule{}
	fs.StringVar(&r.Direction, "direction", "", "`DIRECTION`: ingress or egress")
	fs.StringVar(&r.Ethertype, "ethertype", api.IPv4, "`ETHERTYPE`: IPv4 or IPv6")
	fs.StringVar(&r.Protocol, "protocol", "", "`PROTOCOL`: tcp, udp, sctp, icmp, icmpv6, any or a number 1..255")
	ports := fs.String("port", "", "destination port `N` or range N-M (tcp, udp, sctp)")
	icmpType := fs.Int("icmp-type", 0, "ICMP type 0..255")
	icmpCode := fs.Int("icmp-code", 0, "ICMP code 0..255 (needs --icmp-type)")
	fs.StringVar(&r.RemoteCIDR, "remote-cidr", "", "allowed remote addresses, a `CIDR`")
	fs.StringVar(&r.RemoteGroupID, "remote-group", "", "allowed remote group `SG` (name or ID)")
	pos, err := g.parse(fs, args, "SG")
	if err != nil {
		return "", r, err
	}
	if given(fs, "port") {
		if r.PortMin, r.PortMax, err = api.ParsePortRange(*ports); err != nil {
			return "", r, err
		}
	}
	if given(fs, "icmp-type") {
		r.ICMPType = icmpType
	}
	if given(fs, "icmp-code") {
		r.ICMPCode = icmpCode
	}
	if err := api.ValidateRule(&r); err != nil {
		return "", r, err
	}
	return pos[0], r, nil
}

func (c *cli) sgRuleAdd(args []string) error {
	group, r, err := c.ruleFromArgs(args)
	if err != nil {
		return err
	}
	rule, err := c.st.AddRule(c.ctx, group, r)
	if err != nil {
		return err
	}
	if c.structured() {
		return c.emit(rule, nil)
	}
	name := group
	if g, err := c.st.GetSecurityGroup(c.ctx, group); err == nil {
		name = g.Name + " (" + g.ID + ")"
	}
	fmt.Fprintf(c.out, "rule %s added to security group %s\n", rule.ID, name)
	return nil
}

func (c *cli) hostList(args []string) error {
	if _, err := c.parse(newFlagSet("host list"), args); err != nil {
		return err
	}
	hs, err := c.st.ListHosts(c.ctx)
	if err != nil {
		return err
	}
	return c.emit(hs, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "NAME\tTUNNEL IP\tTUNNEL TYPES\tLAST SEEN\tAGENT")
		for _, h := range hs {
			seen := "never"
			if h.LastSeen != nil {
				seen = time.Since(*h.LastSeen).Round(time.Second).String() + " ago"
			}
			state := "up"
			if !h.Alive {
				state = "DOWN (lease expired; its ports and tunnels stay)"
			}
			types := h.TunnelType
			if len(h.TunnelTypes) > 0 {
				types = strings.Join(h.TunnelTypes, ",")
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", h.Name, h.TunnelIP, types, seen, state)
		}
	})
}

func (c *cli) hostDelete(args []string) error {
	fs := newFlagSet("host delete")
	force := fs.Bool("force", false, "delete even while ports are bound to it (they stay in the store, realised nowhere)")
	pos, err := c.parse(fs, args, "HOST")
	if err != nil {
		return err
	}
	if err := c.st.DeleteHost(c.ctx, pos[0], *force); err != nil {
		return err
	}
	return c.deleted("host", pos[0], pos[0])
}
