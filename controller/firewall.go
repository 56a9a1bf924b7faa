package controller

import (
	"context"

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
	fs := hostwire.GroupState(v.Groups, v.Members)
	fs.ServerLinkLocal = dhcpServerLinkLocal // dhcp6server.go: the source of RAs and DHCPv6 replies
	for _, p := range v.Local {
		if wired[p.ID] {
			fs.Ports = append(fs.Ports, hostwire.NewFirewallPort(&p.Port))
		}
	}
	_, err := s.fw.Apply(ctx, fs)
	return fs, err
}
