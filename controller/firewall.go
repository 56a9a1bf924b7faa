package controller

import (
	"context"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/hostwire"
)

// firewallStep applies the hybrid iptables firewall of every wired local port, in
// bulk; hostwire.Firewall keeps what it applied and changes only what differs.
type firewallStep struct {
	fw *hostwire.Firewall
}

// Sync applies the firewall and returns the state it applied (trace evaluates
// packets against it).
func (s *firewallStep) Sync(ctx context.Context, v *view.View, wired map[string]bool) (hostwire.FirewallState, error) {
	fs := firewallState(v)
	for _, p := range v.Local {
		if wired[p.ID] {
			fs.Ports = append(fs.Ports, firewallPort(p.Port))
		}
	}
	_, err := s.fw.Apply(ctx, fs)
	return fs, err
}

// firewallState is the view's groups and remote-group members, without ports.
func firewallState(v *view.View) hostwire.FirewallState {
	fs := hostwire.FirewallState{Groups: map[string]*api.SecurityGroup{}, Members: map[string][]string{}}
	for id, g := range v.Groups {
		fs.Groups[id] = &g
	}
	for id, ips := range v.Members {
		for _, ip := range ips {
			fs.Members[id] = append(fs.Members[id], ip.String())
		}
	}
	return fs
}

func firewallPort(p api.Port) hostwire.FirewallPort {
	return hostwire.FirewallPort{
		ID: p.ID, MAC: p.MAC, FixedIPs: p.FixedIPs, AllowedAddressPairs: p.AllowedAddressPairs,
		PortSecurity: p.PortSecurityEnabled(), SecurityGroups: p.SecurityGroups,
	}
}
