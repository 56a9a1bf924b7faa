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
	// otherBackend is the last answer of fw.OtherBackendChains, asked on full passes
	// only (start and the 30 s resync): it runs the other backend's iptables-save.
	otherBackend error
}

// Sync applies the firewall and returns the state it applied (trace evaluates
// packets against it); a full pass also looks for lanes chains of the other backend.
func (s *firewallStep) Sync(ctx context.Context, v *view.View, wired map[string]bool, full bool) (hostwire.FirewallState, error) {
	fs := hostwire.GroupState(v.Groups, v.Members)
	fs.ServerLinkLocal = dhcpServerLinkLocal // dhcp6server.go: the source of RAs and DHCPv6 replies
	for _, p := range v.Local {
		if wired[p.ID] {
			fs.Ports = append(fs.Ports, hostwire.NewFirewallPort(&p.Port))
		}
	}
	_, err := s.fw.Apply(ctx, fs)
	if full {
		s.otherBackend = s.fw.OtherBackendChains()
	}
	return fs, err
}

// Warnings are what the firewall found wrong on the host that is no error of a pass:
// lanes chains under the other iptables backend, which filter the same packets with
// rules lanesd no longer updates.
func (s *firewallStep) Warnings() []string {
	if s.otherBackend != nil {
		return []string{"iptables backend mismatch: " + s.otherBackend.Error()}
	}
	return nil
}
