package store

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/lanes-net/lanes/api"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Limits per port (api validates them), so that a port's transaction stays well inside
// etcd's default limit of 128 operations.
const (
	MaxFixedIPs   = api.MaxFixedIPs
	MaxPortGroups = api.MaxPortGroups
)

// CreatePortOption changes what CreatePort does.
type CreatePortOption int

// NoSecurityGroups creates a port without security groups when it names none, instead
// of with the default group (Neutron's "security_groups": []). Its anti-spoofing
// rules still apply; PortSecurity false turns those off too.
const NoSecurityGroups CreatePortOption = 1

// CreatePort creates a port. p.NetworkID and p.SecurityGroups may hold IDs or names
// (the stored port holds IDs); p.Host must be a registered, alive host. An empty MAC
// is allocated (fa:16:3e:xx:xx:xx, unique in the network) and each subnet of the
// network the port gives no address of gets one (see allocIPs): the lowest free IPv4
// address (see FirstAllocatable), the EUI-64 of the MAC on a slaac or
// dhcpv6-stateless subnet, the lowest free address from prefix::2 on a
// dhcpv6-stateful one. Explicit addresses must not be used by another port of the
// network. A port with port security and no groups gets the group named
// DefaultGroupName (created if missing), unless opts holds NoSecurityGroups.
// Everything is written in one transaction.
func (s *Store) CreatePort(ctx context.Context, p api.Port, opts ...CreatePortOption) (api.Port, error) {
	if p.ID == "" {
		p.ID = NewUUID()
	} else if !IsUUID(p.ID) {
		return api.Port{}, &api.FieldError{Field: "port.id", Value: p.ID, Reason: "not a lower-case UUID"}
	}
	if p.DeviceOwner != "" || p.DeviceID != "" {
		return api.Port{}, &api.FieldError{Field: "port.device_owner", Value: p.DeviceOwner, Reason: "router interfaces are made by router add-interface"}
	}
	noGroups := slices.Contains(opts, NoSecurityGroups)
	if noGroups && len(p.SecurityGroups) > 0 {
		return api.Port{}, &api.FieldError{Field: "port.security_groups", Value: p.SecurityGroups[0], Reason: "given together with no security groups"}
	}
	useDefault := !noGroups && len(p.SecurityGroups) == 0 && p.PortSecurityEnabled()
	var out api.Port
	err := s.update(ctx, "create port "+p.Name, func(pl *plan) error {
		if b, err := pl.get(pPorts + p.ID); err != nil {
			return err
		} else if b != nil {
			return &api.FieldError{Field: "port.id", Value: p.ID, Reason: "already used"}
		}
		devKey := pAllocDev + api.TapName(p.ID)[3:]
		if owner, err := pl.get(devKey); err != nil {
			return err
		} else if owner != nil {
			return &api.FieldError{Field: "port.id", Value: p.ID, Reason: fmt.Sprintf("its first %d characters, used in device names, are those of port %s", api.DeviceIDLen, owner)}
		}
		want := clonePort(p)
		if useDefault {
			gid, err := pl.ensureDefaultGroup()
			if err != nil {
				return err
			}
			want.SecurityGroups = []string{gid}
		}
		var err error
		out, err = pl.planPort(nil, want)
		if err != nil {
			return err
		}
		pl.put(devKey, out.ID)
		return nil
	})
	if err != nil {
		return api.Port{}, err
	}
	return out, nil
}

// UpdatePort applies mutate to the current port (by ID or name) and stores the result:
// host (the new host must be alive; the old host's status is dropped), security
// groups, allowed address pairs, port security, name, MAC and fixed IPs (addresses of
// one family given alone keep those of the other; cleared IPs or MAC are allocated
// again; a new MAC moves a slaac or dhcpv6-stateless address to the new MAC's EUI-64;
// addresses given up are released in the same transaction). The network and ID
// cannot change. mutate may run more than once when concurrent writers interfere, so
// it must only change the port it is given.
func (s *Store) UpdatePort(ctx context.Context, ref string, mutate func(*api.Port) error) (api.Port, error) {
	var out api.Port
	err := s.update(ctx, "update port "+ref, func(pl *plan) error {
		var old api.Port
		id, err := pl.resolve("ports", pPorts, ref, &old)
		if err != nil {
			return err
		}
		if id == "" {
			return fmt.Errorf("port %q: %w", ref, ErrNotFound)
		}
		if old.IsRouterInterface() {
			return &api.FieldError{Field: "port", Value: old.Name, Reason: "is an interface of router " + old.DeviceID + "; it changes with its router only"}
		}
		want := clonePort(old)
		if err := mutate(&want); err != nil {
			return err
		}
		if want.DeviceOwner != "" || want.DeviceID != "" {
			return &api.FieldError{Field: "port.device_owner", Value: want.DeviceOwner, Reason: "cannot change"}
		}
		if want.ID != old.ID {
			return &api.FieldError{Field: "port.id", Value: want.ID, Reason: "cannot change"}
		}
		out, err = pl.planPort(&old, want)
		return err
	})
	if err != nil {
		return api.Port{}, err
	}
	return out, nil
}

// planPort checks want (against old when updating) and plans its writes: the port,
// its name, network membership, MAC, IPs and group references. It returns the port as
// stored.
func (pl *plan) planPort(old *api.Port, want api.Port) (api.Port, error) {
	if err := api.ValidateName("port.name", want.Name); err != nil {
		return want, err
	}
	if want.NetworkID == "" {
		return want, &api.FieldError{Field: "port.network", Reason: "must be set"}
	}
	var n api.Network
	netID, err := pl.resolve("networks", pNetworks, want.NetworkID, &n)
	if err != nil {
		return want, err
	}
	if netID == "" {
		return want, &api.FieldError{Field: "port.network", Value: want.NetworkID, Reason: "unknown network"}
	}
	if old != nil && netID != old.NetworkID {
		return want, &api.FieldError{Field: "port.network", Value: want.NetworkID, Reason: "cannot change; delete the port and create a new one"}
	}
	want.NetworkID = netID
	// Addresses in another spelling ("FD00::5") are stored as lanes writes them, so
	// that each has one key in the network's address index.
	for i, s := range want.FixedIPs {
		if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" && !a.Is4In6() {
			want.FixedIPs[i] = a.String()
		}
	}
	// An update that gives the addresses of one family keeps those of the other;
	// one that clears them all gets new ones.
	keep := old
	if len(want.FixedIPs) == 0 {
		keep = nil
	}
	// The SLAAC address follows the MAC: the guest forms it from the MAC it has.
	auto6, pfx6 := autoPrefix(n)
	if old != nil && auto6 && api.NormalizeMAC(old.MAC) != api.NormalizeMAC(want.MAC) {
		if hw, err := net.ParseMAC(old.MAC); err == nil && len(hw) == 6 {
			was := api.EUI64(pfx6, hw).String()
			want.FixedIPs = slices.DeleteFunc(want.FixedIPs, func(s string) bool { return s == was })
		}
	}
	if err := api.ValidatePort(&want, &n, true); err != nil {
		return want, err
	}
	if old == nil || want.Host != old.Host {
		b, err := pl.s.cli.Get(pl.ctx, pHosts+want.Host, clientv3.WithCountOnly())
		if err != nil {
			return want, fmt.Errorf("get host %s: %w", want.Host, err)
		}
		if want.Host == "" || b.Count == 0 {
			return want, &api.FieldError{Field: "port.host", Value: want.Host, Reason: "unknown host (never registered, or deleted; see lanesctl host list)"}
		}
		pl.exists(pHosts + want.Host)
	}
	groups := make([]string, 0, len(want.SecurityGroups))
	for _, ref := range want.SecurityGroups {
		if slices.Contains(pl.newGroups, ref) {
			if !slices.Contains(groups, ref) {
				groups = append(groups, ref)
			}
			continue
		}
		var g api.SecurityGroup
		gid, err := pl.resolve("secgroups", pGroups, ref, &g)
		if err != nil {
			return want, err
		}
		if gid == "" {
			return want, &api.FieldError{Field: "port.security_groups", Value: ref, Reason: "unknown security group"}
		}
		if !slices.Contains(groups, gid) {
			groups = append(groups, gid)
		}
	}
	want.SecurityGroups = groups
	if owner, err := pl.get(nameKey("ports", want.Name)); err != nil {
		return want, err
	} else if owner != nil && string(owner) != want.ID {
		return want, &api.FieldError{Field: "port.name", Value: want.Name, Reason: "already used by port " + string(owner)}
	}

	// MAC: explicit ones must be free in the network, missing ones are drawn at random.
	if want.MAC != "" {
		want.MAC = api.NormalizeMAC(want.MAC)
		if owner, err := pl.get(pAllocMAC + netID + "/" + want.MAC); err != nil {
			return want, err
		} else if owner != nil && string(owner) != want.ID {
			return want, &api.FieldError{Field: "port.mac", Value: want.MAC, Reason: "already used by port " + string(owner) + " on this network"}
		}
	} else {
		used, err := pl.keysUnder(pAllocMAC + netID + "/")
		if err != nil {
			return want, err
		}
		want.MAC, err = randomMAC(used)
		if err != nil {
			return want, err
		}
		pl.absent(pAllocMAC + netID + "/" + want.MAC)
	}

	// IPs: explicit ones must be free in the network; a subnet the port has no
	// address of gets one (see allocIPs).
	if err := pl.allocIPs(keep, &want, n); err != nil {
		return want, err
	}
	if err := api.ValidatePort(&want, &n, false); err != nil {
		return want, fmt.Errorf("store: allocated a port the api refuses: %w", err)
	}

	// Writes. Keys the old port held and the new one does not are released.
	if err := pl.put(pPorts+want.ID, want); err != nil {
		return want, err
	}
	pl.put(nameKey("ports", want.Name), want.ID)
	pl.put(pRefsNet+netID+"/"+want.ID, "")
	pl.put(pAllocMAC+netID+"/"+want.MAC, want.ID)
	for _, a := range want.FixedIPs {
		pl.put(pAllocIP+netID+"/"+a, want.ID)
	}
	for _, g := range want.SecurityGroups {
		pl.put(pRefsSG+g+"/port/"+want.ID, "")
	}
	if old != nil {
		if old.Name != want.Name {
			pl.del(nameKey("ports", old.Name))
		}
		if old.MAC != want.MAC {
			pl.del(pAllocMAC + netID + "/" + old.MAC)
		}
		for _, a := range old.FixedIPs {
			if !slices.Contains(want.FixedIPs, a) {
				pl.del(pAllocIP + netID + "/" + a)
			}
		}
		for _, g := range old.SecurityGroups {
			if !slices.Contains(want.SecurityGroups, g) {
				pl.del(pRefsSG + g + "/port/" + want.ID)
			}
		}
		if old.Host != want.Host {
			// The status was the old host's; the new host reports its own.
			pl.del(statusKey(old.Host, want.ID))
		}
	}
	return want, nil
}

// autoPrefix reports whether n's IPv6 subnet derives addresses from MACs, and its prefix.
func autoPrefix(n api.Network) (bool, netip.Prefix) {
	if n.IPv6 == nil || !n.IPv6.AutoAddress() {
		return false, netip.Prefix{}
	}
	p, err := netip.ParsePrefix(n.IPv6.CIDR)
	return err == nil, p
}

// allocIPs checks that want's explicit addresses are free in network n and gives want
// one address of each subnet it has none of: the address of that subnet that old
// (when not nil) held, or else the lowest free IPv4 address (see FirstAllocatable),
// on an IPv6 subnet the EUI-64 of the MAC (slaac, dhcpv6-stateless; never old's, which
// may be another MAC's) or the lowest free address from prefix::2 (dhcpv6-stateful).
// Router interfaces take only their IPv4 gateway address: routers do not route IPv6.
// IPv4 addresses come first in the result.
func (pl *plan) allocIPs(old *api.Port, want *api.Port, n api.Network) error {
	netID := n.ID
	var has4, has6 bool
	for _, s := range want.FixedIPs {
		a := netip.MustParseAddr(s) // validated
		has4, has6 = has4 || a.Is4(), has6 || a.Is6()
		owner, err := pl.get(pAllocIP + netID + "/" + s)
		if err != nil {
			return err
		}
		if owner != nil && string(owner) != want.ID {
			return &api.FieldError{Field: "port.fixed_ips", Value: s, Reason: "already used by port " + string(owner) + " on this network"}
		}
	}
	var used []string
	lowest := func(first netip.Addr, within netip.Prefix, skip string) (netip.Addr, error) {
		if used == nil {
			var err error
			if used, err = pl.keysUnder(pAllocIP + netID + "/"); err != nil {
				return netip.Addr{}, err
			}
			for _, k := range pl.allocated {
				if a, ok := strings.CutPrefix(k, pAllocIP+netID+"/"); ok {
					used = append(used, a)
				}
			}
		}
		a, ok := lowestFree(first, within, append(used, skip)) // the gateway is no port's
		if !ok {
			return a, &api.FieldError{Field: "port.fixed_ips", Reason: "no free address left in " + within.String()}
		}
		used = append(used, a.String())
		pl.allocated = append(pl.allocated, pAllocIP+netID+"/"+a.String())
		return a, nil
	}
	if n.CIDR != "" && !has4 {
		cidr := netip.MustParsePrefix(n.CIDR)
		if a := oldAddr(old, cidr); a.IsValid() {
			want.FixedIPs = append(want.FixedIPs, a.String())
		} else {
			a, err := lowest(FirstAllocatable(cidr), cidr, n.Gateway)
			if err != nil {
				return err
			}
			want.FixedIPs = append(want.FixedIPs, a.String())
			pl.absent(pAllocIP + netID + "/" + a.String())
		}
	}
	if n.IPv6 != nil && !has6 && !want.IsRouterInterface() {
		pfx := netip.MustParsePrefix(n.IPv6.CIDR)
		var a netip.Addr
		switch {
		case n.IPv6.AutoAddress():
			a = api.EUI64(pfx, mustMAC(want.MAC))
			// MACs are unique in the network, so is their EUI-64; a record written
			// around the store could still hold it.
			owner, err := pl.get(pAllocIP + netID + "/" + a.String())
			if err != nil {
				return err
			}
			if owner != nil && string(owner) != want.ID {
				return &api.FieldError{Field: "port.fixed_ips", Value: a.String(), Reason: "the EUI-64 address of MAC " + want.MAC + " is already used by port " + string(owner) + " on this network"}
			}
		case oldAddr(old, pfx).IsValid():
			a = oldAddr(old, pfx)
		default:
			var err error
			if a, err = lowest(pfx.Addr().Next().Next(), pfx, n.IPv6.Gateway); err != nil {
				return err
			}
			pl.absent(pAllocIP + netID + "/" + a.String())
		}
		want.FixedIPs = append(want.FixedIPs, a.String())
	}
	slices.SortStableFunc(want.FixedIPs, func(x, y string) int {
		return cmp.Compare(netip.MustParseAddr(x).BitLen(), netip.MustParseAddr(y).BitLen())
	})
	return nil
}

// oldAddr is old's fixed IP inside pfx, if old is not nil and has one.
func oldAddr(old *api.Port, pfx netip.Prefix) netip.Addr {
	if old == nil {
		return netip.Addr{}
	}
	for _, s := range old.FixedIPs {
		if a, err := netip.ParseAddr(s); err == nil && pfx.Contains(a) {
			return a
		}
	}
	return netip.Addr{}
}

func mustMAC(s string) net.HardwareAddr {
	hw, err := net.ParseMAC(s)
	if err != nil {
		panic(fmt.Sprintf("store: MAC %q passed validation: %v", s, err))
	}
	return hw
}

// FirstAllocatable is the first address handed out automatically in a network: the
// second usable address (10.0.0.2 in 10.0.0.0/24). The first usable address stays
// free for a gateway, as in Neutron; it can still be given to a port explicitly.
func FirstAllocatable(cidr netip.Prefix) netip.Addr {
	return cidr.Masked().Addr().Next().Next()
}

// lowestFree is the lowest address from first on inside within that used does not
// hold, short of an IPv4 subnet's broadcast address.
func lowestFree(first netip.Addr, within netip.Prefix, used []string) (netip.Addr, bool) {
	taken := make(map[netip.Addr]bool, len(used))
	for _, u := range used {
		if a, err := netip.ParseAddr(u); err == nil {
			taken[a] = true
		}
	}
	var last netip.Addr // IPv6 has no broadcast address: the last one is usable
	if within.Addr().Is4() {
		last = api.LastAddr(within)
	}
	for a := first; a.IsValid() && within.Contains(a) && a != last; a = a.Next() {
		if !taken[a] {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func randomMAC(used []string) (string, error) {
	taken := make(map[string]bool, len(used))
	for _, u := range used {
		taken[u] = true
	}
	if len(taken) >= 1<<24 {
		return "", &api.FieldError{Field: "port.mac", Reason: "no free MAC address left in the network"}
	}
	for {
		var b [3]byte
		rand.Read(b[:])
		m := fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", b[0], b[1], b[2])
		if !taken[m] {
			return m, nil
		}
	}
}

func clonePort(p api.Port) api.Port {
	p.FixedIPs = slices.Clone(p.FixedIPs)
	p.AllowedAddressPairs = slices.Clone(p.AllowedAddressPairs)
	p.SecurityGroups = slices.Clone(p.SecurityGroups)
	if p.PortSecurity != nil {
		v := *p.PortSecurity
		p.PortSecurity = &v
	}
	return p
}

// GetPort finds a port by ID or name.
func (s *Store) GetPort(ctx context.Context, ref string) (api.Port, error) {
	var p api.Port
	id, err := s.reader(ctx).resolve("ports", pPorts, ref, &p)
	if err != nil {
		return api.Port{}, err
	}
	if id == "" {
		return api.Port{}, fmt.Errorf("port %q: %w", ref, ErrNotFound)
	}
	return p, nil
}

// ListPorts returns every port, sorted by name.
func (s *Store) ListPorts(ctx context.Context) ([]api.Port, error) {
	ps, err := listJSON[api.Port](ctx, s, pPorts)
	sort.Slice(ps, func(i, j int) bool { return ps[i].Name < ps[j].Name })
	return ps, err
}

// DeletePort deletes a port (by ID or name), releasing its addresses, names and
// references, and its status, in one transaction.
func (s *Store) DeletePort(ctx context.Context, ref string) error {
	return s.update(ctx, "delete port "+ref, func(pl *plan) error {
		var p api.Port
		id, err := pl.resolve("ports", pPorts, ref, &p)
		if err != nil {
			return err
		}
		if id == "" {
			return fmt.Errorf("port %q: %w", ref, ErrNotFound)
		}
		if p.IsRouterInterface() {
			return &api.FieldError{Field: "port", Value: p.Name, Reason: "is an interface of router " + p.DeviceID + ": use router remove-interface"}
		}
		if err := pl.releasePortFIPs(p); err != nil { // routers.go
			return err
		}
		pl.planDeletePort(p)
		return nil
	})
}

// planDeletePort plans deleting a port and everything it holds.
func (pl *plan) planDeletePort(p api.Port) {
	id := p.ID
	pl.del(pPorts + id)
	pl.del(nameKey("ports", p.Name))
	pl.del(pAllocDev + api.TapName(id)[3:])
	pl.del(pRefsNet + p.NetworkID + "/" + id)
	pl.del(pAllocMAC + p.NetworkID + "/" + p.MAC)
	for _, a := range p.FixedIPs {
		pl.del(pAllocIP + p.NetworkID + "/" + a)
	}
	for _, g := range p.SecurityGroups {
		pl.del(pRefsSG + g + "/port/" + id)
	}
	pl.del(statusKey(p.Host, id))
	pl.del(pStatus + id) // the layout before per-host status keys
}
