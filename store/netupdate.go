package store

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/lanes-net/lanes/api"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// UpdateNetwork changes a network's gateway, DHCP settings and IPv6 subnet (by ID or
// name) in one transaction: mutate gets a copy of the stored network and may change
// only Gateway, DHCP and IPv6. A gateway that a port holds as fixed IP is refused.
// An IPv6 subnet may be added to a network that has none: its ports get their IPv6
// addresses in the same transaction (see allocIPs). While ports are attached, only
// the DNS servers of an existing IPv6 subnet may change: the ports' addresses and
// the guests' configuration derive from the rest.
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
		if old.IPv6 != nil {
			s6 := *old.IPv6
			s6.DNSServers = slices.Clone(old.IPv6.DNSServers)
			want.IPv6 = &s6
		}
		if err := mutate(&want); err != nil {
			return err
		}
		fixed := want
		fixed.Gateway, fixed.DHCP, fixed.IPv6 = old.Gateway, old.DHCP, old.IPv6
		if fixed.ID != old.ID || fixed.Name != old.Name || fixed.VNI != old.VNI || fixed.CIDR != old.CIDR || fixed.MTU != old.MTU ||
			fixed.External != old.External || !reflect.DeepEqual(fixed.Provider, old.Provider) || !reflect.DeepEqual(fixed.AllocationPools, old.AllocationPools) {
			return &api.FieldError{Field: "network", Value: old.Name, Reason: "only the gateway, the DHCP settings and the IPv6 subnet can change"}
		}
		if err := api.ValidateNetwork(&want, false); err != nil {
			return err
		}
		if !reflect.DeepEqual(old.IPv6, want.IPv6) {
			if err := p.planSubnet6(old, want); err != nil {
				return err
			}
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

// planSubnet6 plans the change of a network's IPv6 subnet from old.IPv6 to want.IPv6
// (validated, different): with no port attached anything goes; otherwise a new subnet
// gives each port (but router interfaces) its address, and an existing one may change
// only its DNS servers.
func (p *plan) planSubnet6(old, want api.Network) error {
	refs := pRefsNet + old.ID + "/"
	resp, err := p.s.cli.Get(p.ctx, refs, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return fmt.Errorf("list %s: %w", refs, err)
	}
	if len(resp.Kvs) == 0 {
		p.noneUnder(refs)
		return nil
	}
	if old.IPv6 != nil {
		if want.IPv6 == nil {
			return &api.FieldError{Field: "network.ipv6", Value: old.IPv6.CIDR,
				Reason: fmt.Sprintf("cannot be removed while %d port(s) are attached", len(resp.Kvs))}
		}
		same := *want.IPv6
		same.DNSServers = old.IPv6.DNSServers
		if !reflect.DeepEqual(&same, old.IPv6) {
			return &api.FieldError{Field: "network.ipv6", Value: old.IPv6.CIDR,
				Reason: fmt.Sprintf("only dns_servers can change while %d port(s) are attached: their addresses derive from the rest", len(resp.Kvs))}
		}
		return nil
	}
	// No port may join or leave meanwhile: each one read is guarded by its record, a
	// new one would have a reference newer than this listing.
	p.cmps = append(p.cmps, clientv3.Compare(clientv3.ModRevision(refs), "<", resp.Header.Revision+1).WithPrefix())
	for _, kv := range resp.Kvs {
		id := strings.TrimPrefix(string(kv.Key), refs)
		var port api.Port
		if ok, err := p.getJSON(pPorts+id, &port); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("network %s: port %s is referenced but has no record", old.Name, id)
		}
		if port.IsRouterInterface() { // routers do not route IPv6
			continue
		}
		before := slices.Clone(port.FixedIPs)
		if err := p.allocIPs(nil, &port, want); err != nil {
			return fmt.Errorf("port %s: %w", port.Name, err)
		}
		if err := api.ValidatePort(&port, &want, false); err != nil {
			return fmt.Errorf("port %s: %w", port.Name, err)
		}
		for _, a := range port.FixedIPs {
			if !slices.Contains(before, a) {
				p.put(pAllocIP+old.ID+"/"+a, port.ID)
			}
		}
		if err := p.put(pPorts+port.ID, port); err != nil {
			return err
		}
	}
	return nil
}
