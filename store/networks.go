package store

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/lanes-net/lanes/api"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultUnderlayMTU is assumed when a NetworkSpec gives no underlay MTU.
const DefaultUnderlayMTU = 1500

// NetworkSpec asks for a new network.
type NetworkSpec struct {
	// ID is optional; when set it must be a canonical UUID not used yet.
	ID   string
	Name string
	// CIDR is the IPv4 subnet, IPv6 the IPv6 one; a network has one of them or both.
	CIDR string
	IPv6 *api.Subnet6
	// VNI nil means "allocate the lowest free VNI"; a given VNI must be within
	// 1..api.MaxVNI and free (so an explicit 0 is refused).
	VNI *uint32
	// MTU 0 means UnderlayMTU minus the tunnel overhead; a given MTU may not exceed that.
	MTU int
	// UnderlayMTU of the hosts' tunnel interfaces, api.MinMTU plus the tunnel overhead
	// up to api.MaxMTU; 0 means DefaultUnderlayMTU.
	UnderlayMTU int
	// UnderlayIPVersion (api.IPv4Underlay or api.IPv6Underlay) decides the tunnel
	// overhead; 0 means IPv6 when a registered host has an IPv6 tunnel IP (its
	// tunnels are then IPv6 ones), IPv4 otherwise.
	UnderlayIPVersion int
	// TunnelType carries the network between hosts (its network_type) and decides the
	// overhead; "" means vxlan.
	TunnelType string
	// Gateway and DHCP are handed out by the hosts' DHCP responders (api.DHCP).
	Gateway string
	DHCP    api.DHCP
	// External makes a provider network for router gateways and floating IPs
	// (api.Network.External): no VNI, no tunnel overhead.
	External        bool
	Provider        *api.Provider
	AllocationPools []api.IPRange
}

// CreateNetwork creates a network, allocating its ID, VNI and MTU as needed, in one
// transaction with its name and VNI reservations and, when there is no group named
// DefaultGroupName, with Neutron's default security group (see DefaultSecurityGroup).
func (s *Store) CreateNetwork(ctx context.Context, spec NetworkSpec) (api.Network, error) {
	tt := spec.TunnelType
	if tt == "" {
		tt = api.TunnelVXLAN
	}
	if err := api.ValidateTunnelType("network.network_type", tt); err != nil {
		return api.Network{}, err
	}
	underlay := spec.UnderlayMTU
	if underlay == 0 {
		underlay = DefaultUnderlayMTU
	}
	ipv := spec.UnderlayIPVersion
	if ipv == 0 {
		var err error
		if ipv, err = s.underlayIPVersion(ctx); err != nil {
			return api.Network{}, err
		}
	}
	overhead := api.TunnelOverhead(tt, ipv)
	if low := api.MinMTU + overhead; underlay < low || underlay > api.MaxMTU {
		return api.Network{}, &api.FieldError{Field: "network.underlay_mtu", Value: strconv.Itoa(underlay),
			Reason: fmt.Sprintf("must be within %d..%d (the smallest network MTU %d plus the %s overhead %d, up to the largest IPv4 packet)",
				low, api.MaxMTU, api.MinMTU, tt, overhead)}
	}
	maxMTU := underlay - overhead
	if spec.External {
		maxMTU = underlay
		if spec.VNI != nil {
			return api.Network{}, &api.FieldError{Field: "network.vni", Value: strconv.FormatUint(uint64(*spec.VNI), 10), Reason: "an external network has no VNI"}
		}
	}
	n := api.Network{ID: spec.ID, Name: spec.Name, CIDR: spec.CIDR, MTU: spec.MTU, NetworkType: tt, Gateway: spec.Gateway, DHCP: spec.DHCP,
		External: spec.External, Provider: spec.Provider, AllocationPools: spec.AllocationPools}
	if spec.IPv6 != nil {
		s6 := *spec.IPv6
		s6.DNSServers = slices.Clone(s6.DNSServers)
		n.IPv6 = &s6
	}
	if n.MTU == 0 {
		n.MTU = maxMTU
	}
	if spec.VNI != nil {
		n.VNI = *spec.VNI
	}
	if err := api.ValidateNetwork(&n, spec.VNI == nil && !spec.External); err != nil {
		return api.Network{}, err
	}
	if n.MTU > maxMTU {
		return api.Network{}, &api.FieldError{Field: "network.mtu", Value: strconv.Itoa(n.MTU),
			Reason: fmt.Sprintf("larger than the underlay MTU %d minus the %s overhead %d (%d)", underlay, tt, overhead, maxMTU)}
	}
	if n.ID == "" {
		n.ID = NewUUID()
	} else if !IsUUID(n.ID) {
		return api.Network{}, &api.FieldError{Field: "network.id", Value: n.ID, Reason: "not a lower-case UUID"}
	}
	err := s.update(ctx, "create network "+n.Name, func(p *plan) error {
		if b, err := p.get(pNetworks + n.ID); err != nil {
			return err
		} else if b != nil {
			return &api.FieldError{Field: "network.id", Value: n.ID, Reason: "already used"}
		}
		if owner, err := p.get(nameKey("networks", n.Name)); err != nil {
			return err
		} else if owner != nil {
			return &api.FieldError{Field: "network.name", Value: n.Name, Reason: "already used by network " + string(owner)}
		}
		if spec.VNI != nil {
			owner, err := p.get(pAllocVNI + strconv.FormatUint(uint64(n.VNI), 10))
			if err != nil {
				return err
			}
			if owner != nil {
				return &api.FieldError{Field: "network.vni", Value: strconv.FormatUint(uint64(n.VNI), 10), Reason: "already used by network " + string(owner)}
			}
		} else if !n.External {
			used, err := p.keysUnder(pAllocVNI)
			if err != nil {
				return err
			}
			vni, err := lowestFreeVNI(used)
			if err != nil {
				return err
			}
			n.VNI = vni
			p.absent(pAllocVNI + strconv.FormatUint(uint64(vni), 10))
		}
		if err := p.put(pNetworks+n.ID, n); err != nil {
			return err
		}
		p.put(nameKey("networks", n.Name), n.ID)
		if !n.External {
			p.put(pAllocVNI+strconv.FormatUint(uint64(n.VNI), 10), n.ID)
		}
		_, err := p.ensureDefaultGroup()
		return err
	})
	if err != nil {
		return api.Network{}, err
	}
	return n, nil
}

func lowestFreeVNI(used []string) (uint32, error) {
	taken := make(map[uint32]bool, len(used))
	for _, u := range used {
		v, err := strconv.ParseUint(u, 10, 32)
		if err == nil {
			taken[uint32(v)] = true
		}
	}
	for v := uint32(1); v <= api.MaxVNI; v++ {
		if !taken[v] {
			return v, nil
		}
	}
	return 0, &api.FieldError{Field: "network.vni", Reason: "no free VNI left"}
}

// resolve finds a resource by ID, then by name; kind is the names/ sub-folder and
// prefix the resource folder. It returns the resource's ID, or "" when neither matches.
// The keys read are guarded in p.
func (p *plan) resolve(kind, prefix, ref string, v any) (string, error) {
	if ref == "" || strings.Contains(ref, "/") {
		return "", nil
	}
	if ok, err := p.getJSON(prefix+ref, v); err != nil || ok {
		return ref, err
	}
	id, err := p.get(nameKey(kind, ref))
	if err != nil || id == nil {
		return "", err
	}
	if ok, err := p.getJSON(prefix+string(id), v); err != nil || !ok {
		return "", err
	}
	return string(id), nil
}

func (s *Store) reader(ctx context.Context) *plan {
	return &plan{s: s, ctx: ctx, seen: map[string]bool{}}
}

// GetNetwork finds a network by ID or name.
func (s *Store) GetNetwork(ctx context.Context, ref string) (api.Network, error) {
	var n api.Network
	id, err := s.reader(ctx).resolve("networks", pNetworks, ref, &n)
	if err != nil {
		return api.Network{}, err
	}
	if id == "" {
		return api.Network{}, fmt.Errorf("network %q: %w", ref, ErrNotFound)
	}
	return n, nil
}

// ListNetworks returns every network, sorted by name.
func (s *Store) ListNetworks(ctx context.Context) ([]api.Network, error) {
	ns, err := listJSON[api.Network](ctx, s, pNetworks)
	sort.Slice(ns, func(i, j int) bool { return ns[i].Name < ns[j].Name })
	return ns, err
}

// DeleteNetwork deletes a network (by ID or name) and its reservations. It is refused
// with ErrInUse while ports are attached.
func (s *Store) DeleteNetwork(ctx context.Context, ref string) error {
	return s.update(ctx, "delete network "+ref, func(p *plan) error {
		var n api.Network
		id, err := p.resolve("networks", pNetworks, ref, &n)
		if err != nil {
			return err
		}
		if id == "" {
			return fmt.Errorf("network %q: %w", ref, ErrNotFound)
		}
		if err := p.refuseL3Users(id, n); err != nil { // routers.go
			return err
		}
		ports, err := p.keysUnder(pRefsNet + id + "/")
		if err != nil {
			return err
		}
		if len(ports) > 0 {
			names := first(ports, 5)
			for i, pid := range names {
				if pid != "..." {
					names[i] = p.describe("port", pid)
				}
			}
			return fmt.Errorf("network %s (%s): %w: %d port(s) still attached: %s",
				n.Name, id, ErrInUse, len(ports), strings.Join(names, ", "))
		}
		p.noneUnder(pRefsNet + id + "/")
		p.del(pNetworks + id)
		p.del(nameKey("networks", n.Name))
		if !n.External {
			p.del(pAllocVNI + strconv.FormatUint(uint64(n.VNI), 10))
		}
		// Empty when no port is attached; deleted anyway so nothing can leak.
		p.del(pAllocIP+id+"/", clientv3.WithPrefix())
		p.del(pAllocMAC+id+"/", clientv3.WithPrefix())
		return nil
	})
}

// describe names an object of an in-use error as "port vm1 (ID)": an operator should
// not have to look IDs up one by one. It falls back to the ID when the record is gone.
func (p *plan) describe(kind, id string) string {
	prefix := map[string]string{"port": pPorts, "group": pGroups}[kind]
	var named struct {
		Name string `json:"name"`
	}
	if ok, err := p.getJSON(prefix+id, &named); err != nil || !ok || named.Name == "" {
		return kind + " " + id
	}
	return fmt.Sprintf("%s %s (%s)", kind, named.Name, id)
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], "...")
	}
	return s
}

// underlayIPVersion is the IP version of the cluster's tunnels as the registered
// hosts show it: IPv6 as soon as one host has an IPv6 tunnel IP, since the larger
// overhead is the one a network's MTU must leave room for.
func (s *Store) underlayIPVersion(ctx context.Context) (int, error) {
	hosts, err := listJSON[api.Host](ctx, s, pHosts) // the records alone: no liveness needed
	if err != nil {
		return 0, fmt.Errorf("list hosts for the underlay's IP version: %w", err)
	}
	for _, h := range hosts {
		if a, err := netip.ParseAddr(h.TunnelIP); err == nil && api.IPVersion(a) == api.IPv6Underlay {
			return api.IPv6Underlay, nil
		}
	}
	return api.IPv4Underlay, nil
}
