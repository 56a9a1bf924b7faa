package store

import (
	"context"
	"fmt"
	"reflect"

	"github.com/lanes-net/lanes/api"
)

// UpdateNetwork changes a network's gateway and DHCP settings (by ID or name) in one
// transaction: mutate gets a copy of the stored network and may change only Gateway
// and DHCP. A gateway that a port holds as fixed IP is refused.
func (s *Store) UpdateNetwork(ctx context.Context, ref string, mutate func(*api.Network) error) (api.Network, error) {
	var out api.Network
	err := s.update(ctx, "update network "+ref, func(p *plan) error {
		var old api.Network
		id, err := p.resolve("networks", pNetworks, ref, &old)
		if err != nil {
			return err
		}
		if id == "" {
			return fmt.Errorf("network %q: %w", ref, ErrNotFound)
		}
		want := old
		want.DHCP.DNSServers = append([]string(nil), old.DHCP.DNSServers...)
		want.DHCP.SearchDomains = append([]string(nil), old.DHCP.SearchDomains...)
		want.DHCP.HostRoutes = append([]api.HostRoute(nil), old.DHCP.HostRoutes...)
		if err := mutate(&want); err != nil {
			return err
		}
		fixed := want
		fixed.Gateway, fixed.DHCP = old.Gateway, old.DHCP
		if fixed.ID != old.ID || fixed.Name != old.Name || fixed.VNI != old.VNI || fixed.CIDR != old.CIDR || fixed.MTU != old.MTU ||
			fixed.External != old.External || !reflect.DeepEqual(fixed.Provider, old.Provider) || !reflect.DeepEqual(fixed.AllocationPools, old.AllocationPools) {
			return &api.FieldError{Field: "network", Value: old.Name, Reason: "only the gateway and the DHCP settings can change"}
		}
		if err := api.ValidateNetwork(&want, false); err != nil {
			return err
		}
		if want.Gateway != old.Gateway {
			// The router interface holds the old gateway address (routers.go).
			if rs, err := p.keysUnder(pRefsRouter + id + "/"); err != nil {
				return err
			} else if len(rs) > 0 {
				return &api.FieldError{Field: "network.gateway", Value: want.Gateway, Reason: "router " + rs[0] + " holds the gateway; remove its interface first"}
			}
			p.noneUnder(pRefsRouter + id + "/")
		}
		if want.Gateway != "" && want.Gateway != old.Gateway {
			owner, err := p.get(pAllocIP + id + "/" + want.Gateway)
			if err != nil {
				return err
			}
			if owner != nil {
				return &api.FieldError{Field: "network.gateway", Value: want.Gateway, Reason: "already used by port " + string(owner)}
			}
		}
		out = want
		return p.put(pNetworks+id, want)
	})
	if err != nil {
		return api.Network{}, err
	}
	return out, nil
}
