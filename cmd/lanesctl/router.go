package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/store"
	"github.com/spf13/pflag"
)

// externalFlags are network create's flags of external networks.
type externalFlags struct {
	external *bool
	provider *string
	physnet  *string
	vlan     *int
	pools    list
}

func newExternalFlags(fs *pflag.FlagSet) *externalFlags {
	e := &externalFlags{
		external: fs.Bool("external", false, "an external (provider) network for router gateways and floating IPs"),
		provider: fs.String("provider", "", "`TYPE` of the provider network: flat or vlan"),
		physnet:  fs.String("physnet", "", "physical network `NAME`, mapped to a bridge on the L3 hosts"),
		vlan:     fs.Int("vlan", 0, "VLAN ID of a vlan provider network"),
	}
	fs.Var(&e.pools, "allocation-pool", "`START-END` of addresses for gateways and floating IPs (repeatable)")
	return e
}

// apply puts the external network's settings into spec.
func (e *externalFlags) apply(fs *pflag.FlagSet, spec *store.NetworkSpec) error {
	if !*e.external {
		for _, f := range []string{"provider", "physnet", "vlan", "allocation-pool"} {
			if given(fs, f) {
				return &api.FieldError{Field: "network.external", Reason: "--" + f + " needs --external"}
			}
		}
		return nil
	}
	spec.External = true
	spec.Provider = &api.Provider{Type: *e.provider, Physnet: *e.physnet, VLAN: *e.vlan}
	for _, p := range e.pools {
		start, end, ok := strings.Cut(p, "-")
		if !ok {
			return &api.FieldError{Field: "network.allocation_pools", Value: p, Reason: "want START-END"}
		}
		spec.AllocationPools = append(spec.AllocationPools, api.IPRange{Start: start, End: end})
	}
	return nil
}

// l3Command runs the router and fip commands.
func (c *cli) l3Command(noun, verb string, args []string) (bool, error) {
	switch noun + " " + verb {
	case "router create":
		fs := newFlagSet("router create")
		host := fs.String("host", "", "L3 `HOST` (default: the alive one with the fewest routers)")
		pos, err := c.parse(fs, args, "NAME")
		if err != nil {
			return true, err
		}
		r, err := c.st.CreateRouter(c.ctx, pos[0], *host)
		if err != nil {
			return true, err
		}
		return true, c.emitRouters([]api.Router{r})
	case "router list":
		if _, err := c.parse(newFlagSet("router list"), args); err != nil {
			return true, err
		}
		rs, err := c.st.ListRouters(c.ctx)
		if err != nil {
			return true, err
		}
		return true, c.emitRouters(rs)
	case "router show":
		pos, err := c.parse(newFlagSet("router show"), args, "ROUTER")
		if err != nil {
			return true, err
		}
		r, err := c.st.GetRouter(c.ctx, pos[0])
		if err != nil {
			return true, err
		}
		return true, c.emitRouters([]api.Router{r})
	case "router delete":
		pos, err := c.parse(newFlagSet("router delete"), args, "ROUTER")
		if err != nil {
			return true, err
		}
		r, err := c.st.GetRouter(c.ctx, pos[0])
		if err != nil {
			return true, err
		}
		if err := c.st.DeleteRouter(c.ctx, r.ID); err != nil {
			return true, err
		}
		return true, c.deleted("router", r.Name, r.ID)
	case "router add-interface", "router remove-interface":
		pos, err := c.parse(newFlagSet("router "+verb), args, "ROUTER", "NETWORK")
		if err != nil {
			return true, err
		}
		op := c.st.AddRouterInterface
		if verb == "remove-interface" {
			op = c.st.RemoveRouterInterface
		}
		r, err := op(c.ctx, pos[0], pos[1])
		if err != nil {
			return true, err
		}
		return true, c.emitRouters([]api.Router{r})
	case "router set-gateway":
		fs := newFlagSet("router set-gateway")
		noSNAT := fs.Bool("no-snat", false, "route without translating the attached networks")
		pos, err := c.parse(fs, args, "ROUTER", "EXTERNAL-NETWORK")
		if err != nil {
			return true, err
		}
		r, err := c.st.SetRouterGateway(c.ctx, pos[0], pos[1], !*noSNAT)
		if err != nil {
			return true, err
		}
		return true, c.emitRouters([]api.Router{r})
	case "router clear-gateway":
		pos, err := c.parse(newFlagSet("router clear-gateway"), args, "ROUTER")
		if err != nil {
			return true, err
		}
		r, err := c.st.ClearRouterGateway(c.ctx, pos[0])
		if err != nil {
			return true, err
		}
		return true, c.emitRouters([]api.Router{r})
	case "fip create":
		fs := newFlagSet("fip create")
		port := fs.String("port", "", "`PORT` to associate (name or ID)")
		fixed := fs.String("fixed-ip", "", "fixed `IP` of the port (default: its first)")
		pos, err := c.parse(fs, args, "EXTERNAL-NETWORK")
		if err != nil {
			return true, err
		}
		if *fixed != "" && *port == "" {
			return true, &api.FieldError{Field: "floatingip.fixed_ip", Value: *fixed, Reason: "needs --port"}
		}
		f, err := c.st.CreateFloatingIP(c.ctx, pos[0], *port, *fixed)
		if err != nil {
			return true, err
		}
		return true, c.emitFIPs([]api.FloatingIP{f})
	case "fip list":
		if _, err := c.parse(newFlagSet("fip list"), args); err != nil {
			return true, err
		}
		fs, err := c.st.ListFloatingIPs(c.ctx)
		if err != nil {
			return true, err
		}
		return true, c.emitFIPs(fs)
	case "fip associate":
		fs := newFlagSet("fip associate")
		fixed := fs.String("fixed-ip", "", "fixed `IP` of the port (default: its first)")
		pos, err := c.parse(fs, args, "FIP", "PORT")
		if err != nil {
			return true, err
		}
		f, err := c.st.AssociateFloatingIP(c.ctx, pos[0], pos[1], *fixed)
		if err != nil {
			return true, err
		}
		return true, c.emitFIPs([]api.FloatingIP{f})
	case "fip disassociate":
		pos, err := c.parse(newFlagSet("fip disassociate"), args, "FIP")
		if err != nil {
			return true, err
		}
		f, err := c.st.DisassociateFloatingIP(c.ctx, pos[0])
		if err != nil {
			return true, err
		}
		return true, c.emitFIPs([]api.FloatingIP{f})
	case "fip delete":
		pos, err := c.parse(newFlagSet("fip delete"), args, "FIP")
		if err != nil {
			return true, err
		}
		f, err := c.fip(pos[0])
		if err != nil {
			return true, err
		}
		if err := c.st.DeleteFloatingIP(c.ctx, f.ID); err != nil {
			return true, err
		}
		return true, c.deleted("floating IP", f.IP, f.ID)
	}
	return false, nil
}

// fip finds a floating IP by ID or address.
func (c *cli) fip(ref string) (api.FloatingIP, error) {
	fs, err := c.st.ListFloatingIPs(c.ctx)
	if err != nil {
		return api.FloatingIP{}, err
	}
	for _, f := range fs {
		if f.ID == ref || f.IP == ref {
			return f, nil
		}
	}
	return api.FloatingIP{}, fmt.Errorf("floating IP %q: %w", ref, store.ErrNotFound)
}

// routerView is what router list and show print: the record plus where it runs now.
type routerView struct {
	api.Router
	// ActiveHost is api.RouterHost over the registered hosts: where the router runs.
	ActiveHost string `json:"active_host"`
}

func (c *cli) emitRouters(rs []api.Router) error {
	hs, err := c.st.ListHosts(c.ctx)
	if err != nil && !errors.Is(err, store.ErrPermissionDenied) {
		return err
	}
	hosts := map[string]api.Host{}
	for _, h := range hs {
		hosts[h.Name] = h
	}
	vs := make([]routerView, len(rs))
	for i := range rs {
		vs[i] = routerView{Router: rs[i], ActiveHost: api.RouterHost(&rs[i], hosts)}
	}
	return c.emit(vs, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "NAME\tID\tHOST\tACTIVE ON\tGATEWAY\tINTERFACES")
		for _, v := range vs {
			gw := "-"
			if g := v.Gateway; g != nil {
				gw = g.IP
				if !g.SNAT {
					gw += " (no snat)"
				}
			}
			var ifs []string
			for _, in := range v.Interfaces {
				ifs = append(ifs, in.IP+" on "+in.CIDR+" ("+api.QrName(in.PortID)+")")
			}
			active := v.ActiveHost
			if active == "" {
				active = "NONE (no alive L3 host)"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.ID, v.Host, active, gw, orDash(strings.Join(ifs, ", ")))
		}
	})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *cli) emitFIPs(fs []api.FloatingIP) error {
	return c.emit(fs, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "IP\tID\tPORT\tFIXED IP\tROUTER")
		for _, f := range fs {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", f.IP, f.ID, orDash(f.PortID), orDash(f.FixedIP), orDash(f.RouterID))
		}
	})
}
