package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/spf13/pflag"
)

// dhcpFlags are the gateway and DHCP flags of network create and update. Update
// changes only what was given: an empty value clears a setting (--dns "").
type dhcpFlags struct {
	fs                   *pflag.FlagSet
	gateway, domain      string
	dns, search, routes  list
	lease                time.Duration
	noDHCP, dhcp, update bool
}

func newDHCPFlags(fs *pflag.FlagSet, update bool) *dhcpFlags {
	d := &dhcpFlags{fs: fs, update: update}
	fs.StringVar(&d.gateway, "gateway", "", "router address `IP` handed out by DHCP (\"\": none)")
	fs.Var(&d.dns, "dns", "DNS server `IP` handed out by DHCP (repeatable or comma-separated)")
	fs.StringVar(&d.domain, "domain", "", "DNS domain `NAME` handed out by DHCP")
	fs.Var(&d.search, "search", "DNS search domain `NAME` (repeatable or comma-separated; default: --domain)")
	fs.Var(&d.routes, "route", "extra route `CIDR,NEXTHOP` handed out as a classless static route (repeatable)")
	fs.DurationVar(&d.lease, "lease", 0, "DHCP lease time (default 24h)")
	fs.BoolVar(&d.noDHCP, "no-dhcp", false, "lanesd does not answer DHCP on this network")
	if update {
		fs.BoolVar(&d.dhcp, "dhcp", false, "answer DHCP on this network again")
	}
	return d
}

// apply writes the given flags into n.
func (d *dhcpFlags) apply(n *api.Network) error {
	set := map[string]bool{}
	d.fs.Visit(func(f *pflag.Flag) { set[f.Name] = true })
	split := splitList
	if set["gateway"] {
		n.Gateway = d.gateway
	}
	if set["dns"] {
		n.DHCP.DNSServers = split(d.dns)
	}
	if set["domain"] {
		n.DHCP.Domain = d.domain
	}
	if set["search"] {
		n.DHCP.SearchDomains = split(d.search)
	}
	if set["route"] {
		n.DHCP.HostRoutes = nil
		for _, r := range d.routes {
			if r == "" {
				continue
			}
			hr, err := api.ParseHostRoute(r)
			if err != nil {
				return err
			}
			n.DHCP.HostRoutes = append(n.DHCP.HostRoutes, hr)
		}
	}
	if set["lease"] {
		if d.lease%time.Second != 0 || d.lease < 0 {
			return &api.FieldError{Field: "network.dhcp.lease_seconds", Value: d.lease.String(), Reason: "must be whole seconds"}
		}
		n.DHCP.LeaseSeconds = int(d.lease / time.Second)
	}
	if set["no-dhcp"] && set["dhcp"] {
		return &api.FieldError{Field: "network.dhcp.disabled", Reason: "give --dhcp or --no-dhcp, not both"}
	}
	if set["no-dhcp"] {
		n.DHCP.Disabled = d.noDHCP
	}
	if set["dhcp"] {
		n.DHCP.Disabled = !d.dhcp
	}
	return nil
}

func (c *cli) networkUpdate(args []string) error {
	fs := newFlagSet("network update")
	d := newDHCPFlags(fs, true)
	v6 := newIPv6Flags(fs)
	pos, err := c.parse(fs, args, "NETWORK")
	if err != nil {
		return err
	}
	n, err := c.st.UpdateNetwork(c.ctx, pos[0], func(n *api.Network) error {
		if err := d.apply(n); err != nil {
			return err
		}
		return v6.apply(n)
	})
	if err != nil {
		return err
	}
	return c.emitNetworks([]api.Network{n})
}

// dhcpSummary is the DHCP column of network list and show.
func dhcpSummary(n api.Network) string {
	if n.DHCP.Disabled {
		return "off"
	}
	parts := []string{"on"}
	if len(n.DHCP.DNSServers) > 0 {
		parts = append(parts, "dns "+strings.Join(n.DHCP.DNSServers, ","))
	}
	if n.DHCP.Domain != "" {
		parts = append(parts, "domain "+n.DHCP.Domain)
	}
	if s := n.DHCP.SearchDomains; len(s) > 0 {
		parts = append(parts, "search "+strings.Join(s, ","))
	}
	for _, r := range n.DHCP.HostRoutes {
		parts = append(parts, "route "+r.String())
	}
	parts = append(parts, fmt.Sprintf("lease %s", time.Duration(n.DHCP.Lease())*time.Second))
	return strings.Join(parts, ", ")
}

func (c *cli) emitNetworks(ns []api.Network) error {
	return c.emit(ns, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "NAME\tID\tTYPE\tVNI\tCIDR\tIPV6\tMTU\tGATEWAY\tDHCP")
		for _, n := range ns {
			gw := n.Gateway
			if gw == "" {
				gw = "-"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\n", n.Name, n.ID, n.Type(), n.VNI, orDash(n.CIDR), ipv6Summary(n.IPv6), n.MTU, gw, dhcpSummary(n))
		}
	})
}

// dhcpColumn is the DHCP column of lanesctl status: what the responder did for the
// port.
func dhcpColumn(r *api.DHCPReport) string {
	if r == nil {
		return "-"
	}
	if !r.Serving {
		return fmt.Sprintf("off (refused %d)", r.Refused)
	}
	s := fmt.Sprintf("%s: answered %d, refused %d", r.Address, r.Answered, r.Refused)
	if r.Last != "" {
		s += "; last " + r.Last + " at " + r.LastAt.Format("15:04:05")
	}
	return s
}
