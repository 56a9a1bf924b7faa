package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/lanes-net/lanes/api"
	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The etcd roles lanes gives its users. With etcd's --client-cert-auth a client
// certificate's common name is the user; users have no password.
const (
	// RoleOperator writes the desired state: networks, ports, security groups, and
	// every kind added later under Prefix. It is not etcd's root: it cannot change
	// users, roles or the cluster.
	RoleOperator = "lanes-operator"
	// RoleReader reads everything under Prefix (monitoring, dashboards).
	RoleReader = "lanes-reader"
	// RootUser is etcd's administrator, needed by SetupAccess.
	RootUser = "root"

	hostRolePrefix = "lanes-host-"
)

// HostRole is the role of one host: it reads the desired state and writes only its
// own registration (and the lease it is attached to) and its own ports' statuses.
func HostRole(host string) string { return hostRolePrefix + host }

// Perm is one key range a role may read (Write false) or read and write.
type Perm struct {
	Key, End string // End empty: the single key Key
	Write    bool
}

func (p Perm) String() string {
	mode := "read"
	if p.Write {
		mode = "readwrite"
	}
	if p.End == "" {
		return mode + " " + p.Key
	}
	if p.End == clientv3.GetPrefixRangeEnd(p.Key) {
		return mode + " " + p.Key + "*"
	}
	return fmt.Sprintf("%s [%s, %s)", mode, p.Key, p.End)
}

func prefixPerm(prefix string, write bool) Perm {
	return Perm{Key: prefix, End: clientv3.GetPrefixRangeEnd(prefix), Write: write}
}

// RolePerms is what a lanes role may do; false for a role lanes does not own.
func RolePerms(role string) ([]Perm, bool) {
	switch {
	case role == RoleOperator:
		return []Perm{prefixPerm(Prefix, true)}, true
	case role == RoleReader:
		return []Perm{prefixPerm(Prefix, false)}, true
	case strings.HasPrefix(role, hostRolePrefix):
		h := strings.TrimPrefix(role, hostRolePrefix)
		return []Perm{
			prefixPerm(Prefix, false),
			{Key: pHosts + h, Write: true},
			// Its liveness key, attached to its lease, where the store keeps liveness
			// apart from the host record.
			{Key: Prefix + "alive/" + h, Write: true},
			// Its heartbeat, which outlives the lease to say when it was last seen.
			{Key: pSeen + h, Write: true},
			// The trailing slash keeps host h1 out of h10's statuses.
			prefixPerm(pStatus+h+"/", true),
		}, true
	}
	return nil, false
}

// Access lists who gets which lanes role.
type Access struct {
	Hosts, Operators, Readers []string
}

// ErrPermissionDenied is etcd's refusal of a request the user's roles do not allow.
var ErrPermissionDenied = rpctypes.ErrPermissionDenied

// ErrNotRoot is wrapped when SetupAccess runs without etcd's root user.
var ErrNotRoot = errors.New("needs etcd's root user")

// SetupAccess makes etcd's users and roles match lanes' model and turns on
// authentication: the roles get exactly their permissions (extra ones are revoked),
// each named user exists without a password and holds exactly its lanes role (roles
// not owned by lanes are left alone), etcd's root user exists, and status keys of the
// layout before per-host prefixes are removed (their hosts report again). Running it
// again changes nothing; adding a name to a later run adds that user. It returns what
// it changed. Once authentication is on, only the root user may run it.
func (s *Store) SetupAccess(ctx context.Context, a Access) ([]string, error) {
	want := map[string]string{} // user -> lanes role
	for _, l := range []struct {
		field string
		names []string
		role  func(string) string
	}{
		{"host", a.Hosts, HostRole},
		{"operator", a.Operators, func(string) string { return RoleOperator }},
		{"reader", a.Readers, func(string) string { return RoleReader }},
	} {
		for _, n := range l.names {
			if err := ValidateUser(l.field, n); err != nil {
				return nil, err
			}
			if _, dup := want[n]; dup {
				return nil, &api.FieldError{Field: l.field, Value: n, Reason: "given twice: a user has one lanes role"}
			}
			want[n] = l.role(n)
		}
	}
	var changes []string
	auth := s.cli.Auth
	rootErr := func(what string, err error) error {
		if errors.Is(err, rpctypes.ErrPermissionDenied) || errors.Is(err, rpctypes.ErrUserEmpty) {
			return fmt.Errorf("%s: %w (use the root certificate of lanesctl pki init): %w", what, ErrNotRoot, err)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	status, err := auth.AuthStatus(ctx)
	if err != nil {
		return nil, rootErr("etcd auth status", err)
	}

	roles := []string{RoleOperator, RoleReader}
	for _, h := range a.Hosts {
		roles = append(roles, HostRole(h))
	}
	for _, role := range roles {
		c, err := s.syncRole(ctx, role)
		if err != nil {
			return changes, rootErr("role "+role, err)
		}
		changes = append(changes, c...)
	}
	if c, err := s.syncUser(ctx, RootUser, "root"); err != nil {
		return changes, rootErr("user root", err)
	} else {
		changes = append(changes, c...)
	}
	users := make([]string, 0, len(want))
	for u := range want {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		c, err := s.syncUser(ctx, u, want[u])
		if err != nil {
			return changes, rootErr("user "+u, err)
		}
		changes = append(changes, c...)
	}
	if n, err := s.removeOldStatusKeys(ctx); err != nil {
		return changes, err
	} else if n > 0 {
		changes = append(changes, fmt.Sprintf("removed %d status keys of the old layout", n))
	}
	if !status.Enabled {
		if _, err := auth.AuthEnable(ctx); err != nil {
			return changes, fmt.Errorf("enable etcd auth: %w", err)
		}
		changes = append(changes, "authentication enabled")
	}
	return changes, nil
}

// ValidateUser checks a name that becomes an etcd user and a certificate CN.
func ValidateUser(field, name string) error {
	if err := api.ValidateName(field, name); err != nil {
		return err
	}
	if name == RootUser {
		return &api.FieldError{Field: field, Value: name, Reason: "is etcd's administrator; pick another name"}
	}
	return nil
}

// syncRole creates role if missing and makes its permissions exactly RolePerms.
func (s *Store) syncRole(ctx context.Context, role string) ([]string, error) {
	want, _ := RolePerms(role)
	var changes []string
	resp, err := s.cli.Auth.RoleGet(ctx, role)
	if errors.Is(err, rpctypes.ErrRoleNotFound) {
		if _, err := s.cli.Auth.RoleAdd(ctx, role); err != nil {
			return nil, err
		}
		changes = append(changes, "role "+role+" created")
		resp = &clientv3.AuthRoleGetResponse{}
	} else if err != nil {
		return nil, err
	}
	have := map[Perm]bool{}
	for _, p := range resp.Perm {
		have[Perm{Key: string(p.Key), End: string(p.RangeEnd), Write: p.PermType == authpb.READWRITE}] = true
	}
	for p := range have {
		if !slices.Contains(want, p) {
			if _, err := s.cli.Auth.RoleRevokePermission(ctx, role, p.Key, p.End); err != nil {
				return changes, err
			}
			changes = append(changes, fmt.Sprintf("role %s: revoked %s", role, p))
		}
	}
	for _, p := range want {
		if have[p] {
			continue
		}
		typ := clientv3.PermissionType(clientv3.PermRead)
		if p.Write {
			typ = clientv3.PermissionType(clientv3.PermReadWrite)
		}
		if _, err := s.cli.Auth.RoleGrantPermission(ctx, role, p.Key, p.End, typ); err != nil {
			return changes, err
		}
		changes = append(changes, fmt.Sprintf("role %s: granted %s", role, p))
	}
	return changes, nil
}

// syncUser creates user without a password if missing and makes role its only lanes
// role (etcd's root role counts as one).
func (s *Store) syncUser(ctx context.Context, user, role string) ([]string, error) {
	var changes []string
	resp, err := s.cli.Auth.UserGet(ctx, user)
	if errors.Is(err, rpctypes.ErrUserNotFound) {
		if _, err := s.cli.Auth.UserAddWithOptions(ctx, user, "", &clientv3.UserAddOptions{NoPassword: true}); err != nil {
			return nil, err
		}
		changes = append(changes, "user "+user+" added")
		resp = &clientv3.AuthUserGetResponse{}
	} else if err != nil {
		return nil, err
	}
	for _, r := range resp.Roles {
		if r != role && (isLanesRole(r) || r == "root") {
			if _, err := s.cli.Auth.UserRevokeRole(ctx, user, r); err != nil {
				return changes, err
			}
			changes = append(changes, fmt.Sprintf("user %s: role %s revoked", user, r))
		}
	}
	if !slices.Contains(resp.Roles, role) {
		if _, err := s.cli.Auth.UserGrantRole(ctx, user, role); err != nil {
			return changes, err
		}
		changes = append(changes, fmt.Sprintf("user %s: role %s granted", user, role))
	}
	return changes, nil
}

func isLanesRole(r string) bool {
	return r == RoleOperator || r == RoleReader || strings.HasPrefix(r, hostRolePrefix)
}

// removeOldStatusKeys deletes status/<port id> keys, the layout before per-host
// status prefixes; no role can write them any more.
func (s *Store) removeOldStatusKeys(ctx context.Context) (int, error) {
	resp, err := s.cli.Get(ctx, pStatus, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", pStatus, err)
	}
	var ops []clientv3.Op
	for _, kv := range resp.Kvs {
		if rest := strings.TrimPrefix(string(kv.Key), pStatus); !strings.Contains(rest, "/") {
			ops = append(ops, clientv3.OpDelete(string(kv.Key)))
		}
	}
	if len(ops) == 0 {
		return 0, nil
	}
	if _, err := s.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
		return 0, fmt.Errorf("remove old status keys: %w", err)
	}
	return len(ops), nil
}

// User is an etcd user and its roles.
type User struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
}

// ListUsers returns etcd's users with their roles, sorted by name (root only).
func (s *Store) ListUsers(ctx context.Context) ([]User, error) {
	resp, err := s.cli.Auth.UserList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list etcd users: %w", err)
	}
	out := make([]User, 0, len(resp.Users))
	for _, name := range resp.Users {
		u, err := s.cli.Auth.UserGet(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("etcd user %s: %w", name, err)
		}
		out = append(out, User{Name: name, Roles: u.Roles})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// RemoveUser deletes an etcd user lanes made (a retired host, operator or reader) and
// a host's own role. Its certificate then authenticates no one: etcd has no user of
// that name.
func (s *Store) RemoveUser(ctx context.Context, name string) error {
	if err := ValidateUser("user", name); err != nil {
		return err
	}
	u, err := s.cli.Auth.UserGet(ctx, name)
	if err != nil {
		return fmt.Errorf("etcd user %s: %w", name, err)
	}
	if !slices.ContainsFunc(u.Roles, isLanesRole) {
		return &api.FieldError{Field: "user", Value: name, Reason: "holds no lanes role; remove it with etcdctl"}
	}
	if _, err := s.cli.Auth.UserDelete(ctx, name); err != nil {
		return fmt.Errorf("delete etcd user %s: %w", name, err)
	}
	if slices.Contains(u.Roles, HostRole(name)) {
		if _, err := s.cli.Auth.RoleDelete(ctx, HostRole(name)); err != nil && !errors.Is(err, rpctypes.ErrRoleNotFound) {
			return fmt.Errorf("delete etcd role %s: %w", HostRole(name), err)
		}
	}
	return nil
}
