package store

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/lanes-net/lanes/api"
)

// DefaultGroupName names Neutron's default security group. As in Neutron it is the
// store's behaviour, not a client's: CreateNetwork makes it (in the network's own
// transaction) when no group of that name exists, and CreatePort gives it to a port
// created without groups unless told NoSecurityGroups. A group an operator created
// under this name is used as it is.
const DefaultGroupName = "default"

// DefaultSecurityGroup returns, without storing it, a group with Neutron's default
// rules: all egress over IPv4 and IPv6, and ingress over IPv4 and IPv6 from members of
// the same group. Its ID is chosen here so that the rules can name it as their remote
// group.
func DefaultSecurityGroup(name string) api.SecurityGroup {
	id := NewUUID()
	return api.SecurityGroup{ID: id, Name: name, Rules: []api.Rule{
		{ID: NewUUID(), Direction: api.Egress, Ethertype: api.IPv4},
		{ID: NewUUID(), Direction: api.Egress, Ethertype: api.IPv6},
		{ID: NewUUID(), Direction: api.Ingress, Ethertype: api.IPv4, RemoteGroupID: id},
		{ID: NewUUID(), Direction: api.Ingress, Ethertype: api.IPv6, RemoteGroupID: id},
	}}
}

// EnsureDefaultSecurityGroup returns the group named DefaultGroupName, creating it with
// DefaultSecurityGroup's rules when it does not exist.
func (s *Store) EnsureDefaultSecurityGroup(ctx context.Context) (api.SecurityGroup, error) {
	var id string
	err := s.update(ctx, "ensure the default security group", func(pl *plan) error {
		var err error
		id, err = pl.ensureDefaultGroup()
		return err
	})
	if err != nil {
		return api.SecurityGroup{}, err
	}
	return s.GetSecurityGroup(ctx, id)
}

// ensureDefaultGroup returns the ID of the group named DefaultGroupName, planning its
// creation when there is none. The name key's guard makes concurrent planners agree
// on one group: all but the first to commit plan again and find it.
func (pl *plan) ensureDefaultGroup() (string, error) {
	owner, err := pl.get(nameKey("secgroups", DefaultGroupName))
	if err != nil {
		return "", err
	}
	if owner != nil {
		return string(owner), nil
	}
	g, err := pl.planGroup(nil, DefaultSecurityGroup(DefaultGroupName))
	if err != nil {
		return "", fmt.Errorf("default security group: %w", err)
	}
	pl.newGroups = append(pl.newGroups, g.ID)
	return g.ID, nil
}

// CreateSecurityGroup stores a new group. Missing group and rule IDs are generated;
// remote groups may be given by ID or name, including the group's own.
func (s *Store) CreateSecurityGroup(ctx context.Context, g api.SecurityGroup) (api.SecurityGroup, error) {
	if g.ID == "" {
		g.ID = NewUUID()
	} else if !IsUUID(g.ID) {
		return api.SecurityGroup{}, &api.FieldError{Field: "sg.id", Value: g.ID, Reason: "not a lower-case UUID"}
	}
	var out api.SecurityGroup
	err := s.update(ctx, "create security group "+g.Name, func(pl *plan) error {
		if b, err := pl.get(pGroups + g.ID); err != nil {
			return err
		} else if b != nil {
			return &api.FieldError{Field: "sg.id", Value: g.ID, Reason: "already used"}
		}
		var err error
		out, err = pl.planGroup(nil, cloneGroup(g))
		return err
	})
	if err != nil {
		return api.SecurityGroup{}, err
	}
	return out, nil
}

// planGroup checks want (against old when updating) and plans the writes of the group,
// its name and its remote-group references.
func (pl *plan) planGroup(old *api.SecurityGroup, want api.SecurityGroup) (api.SecurityGroup, error) {
	if err := api.ValidateSecurityGroup(&want); err != nil {
		return want, err
	}
	if owner, err := pl.get(nameKey("secgroups", want.Name)); err != nil {
		return want, err
	} else if owner != nil && string(owner) != want.ID {
		return want, &api.FieldError{Field: "sg.name", Value: want.Name, Reason: "already used by security group " + string(owner)}
	}
	var remotes []string
	ids := map[string]bool{}
	for i := range want.Rules {
		r := &want.Rules[i]
		if r.ID == "" {
			r.ID = NewUUID()
		}
		if ids[r.ID] {
			return want, &api.FieldError{Field: "rule.id", Value: r.ID, Reason: "used twice in the group"}
		}
		ids[r.ID] = true
		if r.RemoteGroupID != "" {
			if r.RemoteGroupID == want.ID || r.RemoteGroupID == want.Name {
				r.RemoteGroupID = want.ID
			} else {
				var rg api.SecurityGroup
				rid, err := pl.resolve("secgroups", pGroups, r.RemoteGroupID, &rg)
				if err != nil {
					return want, err
				}
				if rid == "" {
					return want, &api.FieldError{Field: "rule.remote_group", Value: r.RemoteGroupID, Reason: "unknown security group"}
				}
				r.RemoteGroupID = rid
				if !slices.Contains(remotes, rid) {
					remotes = append(remotes, rid)
				}
			}
		}
		for _, prev := range want.Rules[:i] {
			if sameRule(prev, *r) {
				return want, &api.FieldError{Field: "rule", Value: r.ID, Reason: "duplicate of rule " + prev.ID}
			}
		}
	}
	if err := pl.put(pGroups+want.ID, want); err != nil {
		return want, err
	}
	pl.put(nameKey("secgroups", want.Name), want.ID)
	for _, rid := range remotes {
		pl.put(pRefsSG+rid+"/sg/"+want.ID, "")
	}
	if old != nil {
		if old.Name != want.Name {
			pl.del(nameKey("secgroups", old.Name))
		}
		for _, rid := range remoteGroups(*old) {
			if !slices.Contains(remotes, rid) {
				pl.del(pRefsSG + rid + "/sg/" + want.ID)
			}
		}
	}
	return want, nil
}

// remoteGroups lists the other groups g's rules name as remote.
func remoteGroups(g api.SecurityGroup) []string {
	var out []string
	for _, r := range g.Rules {
		if r.RemoteGroupID != "" && r.RemoteGroupID != g.ID && !slices.Contains(out, r.RemoteGroupID) {
			out = append(out, r.RemoteGroupID)
		}
	}
	return out
}

func sameRule(a, b api.Rule) bool {
	a.ID, b.ID = "", ""
	eqp := func(x, y *int) bool { return x == nil && y == nil || x != nil && y != nil && *x == *y }
	np := func(p string) string {
		n, err := api.ProtocolNumber(p)
		if err != nil {
			return p
		}
		return fmt.Sprint(n)
	}
	return a.Direction == b.Direction && a.Ethertype == b.Ethertype && np(a.Protocol) == np(b.Protocol) &&
		a.PortMin == b.PortMin && a.PortMax == b.PortMax && eqp(a.ICMPType, b.ICMPType) &&
		eqp(a.ICMPCode, b.ICMPCode) && a.RemoteCIDR == b.RemoteCIDR && a.RemoteGroupID == b.RemoteGroupID
}

func cloneGroup(g api.SecurityGroup) api.SecurityGroup {
	g.Rules = slices.Clone(g.Rules)
	for i := range g.Rules {
		r := &g.Rules[i]
		if r.ICMPType != nil {
			v := *r.ICMPType
			r.ICMPType = &v
		}
		if r.ICMPCode != nil {
			v := *r.ICMPCode
			r.ICMPCode = &v
		}
	}
	return g
}

// GetSecurityGroup finds a group by ID or name.
func (s *Store) GetSecurityGroup(ctx context.Context, ref string) (api.SecurityGroup, error) {
	var g api.SecurityGroup
	id, err := s.reader(ctx).resolve("secgroups", pGroups, ref, &g)
	if err != nil {
		return api.SecurityGroup{}, err
	}
	if id == "" {
		return api.SecurityGroup{}, fmt.Errorf("security group %q: %w", ref, ErrNotFound)
	}
	return g, nil
}

// ListSecurityGroups returns every group, sorted by name.
func (s *Store) ListSecurityGroups(ctx context.Context) ([]api.SecurityGroup, error) {
	gs, err := listJSON[api.SecurityGroup](ctx, s, pGroups)
	sort.Slice(gs, func(i, j int) bool { return gs[i].Name < gs[j].Name })
	return gs, err
}

// updateGroup re-plans the group named by ref after change edits a copy of it.
func (s *Store) updateGroup(ctx context.Context, what, ref string, change func(*api.SecurityGroup) error) (api.SecurityGroup, error) {
	var out api.SecurityGroup
	err := s.update(ctx, what, func(pl *plan) error {
		var old api.SecurityGroup
		id, err := pl.resolve("secgroups", pGroups, ref, &old)
		if err != nil {
			return err
		}
		if id == "" {
			return fmt.Errorf("security group %q: %w", ref, ErrNotFound)
		}
		want := cloneGroup(old)
		if err := change(&want); err != nil {
			return err
		}
		out, err = pl.planGroup(&old, want)
		return err
	})
	return out, err
}

// AddRule adds a rule (its ID generated when empty) to the group named by ref and
// returns the rule as stored. A rule equal to an existing one is refused.
func (s *Store) AddRule(ctx context.Context, groupRef string, r api.Rule) (api.Rule, error) {
	if r.ID == "" {
		r.ID = NewUUID()
	}
	g, err := s.updateGroup(ctx, "add rule to security group "+groupRef, groupRef, func(g *api.SecurityGroup) error {
		g.Rules = append(g.Rules, r)
		return nil
	})
	if err != nil {
		return api.Rule{}, err
	}
	return g.Rules[len(g.Rules)-1], nil
}

// DeleteRule removes the rule with ruleID from the group named by ref.
func (s *Store) DeleteRule(ctx context.Context, groupRef, ruleID string) error {
	_, err := s.updateGroup(ctx, "delete rule "+ruleID, groupRef, func(g *api.SecurityGroup) error {
		i := slices.IndexFunc(g.Rules, func(r api.Rule) bool { return r.ID == ruleID })
		if i < 0 {
			return fmt.Errorf("rule %q of security group %s: %w", ruleID, g.Name, ErrNotFound)
		}
		g.Rules = slices.Delete(g.Rules, i, i+1)
		return nil
	})
	return err
}

// DeleteSecurityGroup deletes a group (by ID or name). It is refused with ErrInUse
// while a port uses the group or another group's rule names it as remote group.
func (s *Store) DeleteSecurityGroup(ctx context.Context, ref string) error {
	return s.update(ctx, "delete security group "+ref, func(pl *plan) error {
		var g api.SecurityGroup
		id, err := pl.resolve("secgroups", pGroups, ref, &g)
		if err != nil {
			return err
		}
		if id == "" {
			return fmt.Errorf("security group %q: %w", ref, ErrNotFound)
		}
		users, err := pl.keysUnder(pRefsSG + id + "/")
		if err != nil {
			return err
		}
		if len(users) > 0 {
			users = first(users, 5)
			for i, u := range users {
				if kind, uid, ok := strings.Cut(u, "/"); ok {
					users[i] = pl.describe(map[string]string{"sg": "group", "port": "port"}[kind], uid)
				}
			}
			return fmt.Errorf("security group %s (%s): %w: used by %s", g.Name, id, ErrInUse, strings.Join(users, ", "))
		}
		pl.noneUnder(pRefsSG + id + "/")
		pl.del(pGroups + id)
		pl.del(nameKey("secgroups", g.Name))
		for _, rid := range remoteGroups(g) {
			pl.del(pRefsSG + rid + "/sg/" + id)
		}
		return nil
	})
}
