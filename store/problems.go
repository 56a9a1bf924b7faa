package store

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/lanes-net/lanes/api"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Record kinds: the folders under Prefix that hold records, as Problem.Kind names them.
const (
	KindNetworks    = "networks"
	KindPorts       = "ports"
	KindGroups      = "secgroups"
	KindHosts       = "hosts"
	KindStatus      = "status"
	KindRouters     = "routers"
	KindFloatingIPs = "floatingips"
	// kindAlive holds the hosts' lease-bound alive keys: not records, no problems.
	kindAlive = "alive"
)

// Problem classes: why (part of) a record is left out of a State.
const (
	// ProblemUndecodable: the value is not JSON of the record's type, or is larger than
	// MaxRecordBytes (then it is not even read).
	ProblemUndecodable = "undecodable"
	// ProblemInvalid: the value decodes but fails the api validation the CLI applies, or
	// the ID inside differs from the key's.
	ProblemInvalid = "invalid"
	// ProblemConflict: the record claims something an older record (lower create
	// revision) already holds: a VNI, a MAC or IP in a network, a device name, a
	// tunnel IP. The older one keeps working; Err names it.
	ProblemConflict = "conflict"
	// ProblemDangling: the record names a network or security group that is not in the
	// State (missing, or left out for a problem of its own).
	ProblemDangling = "dangling"
)

var recordNames = map[string]string{KindNetworks: "network", KindPorts: "port", KindGroups: "security group", KindHosts: "host", KindStatus: "port status", KindRouters: "router", KindFloatingIPs: "floating IP"}

// MaxRecordBytes bounds a record the mirror decodes. The api limits keep every valid
// record far below it (a group with api.MaxRules of the longest rules is about 300 KB);
// a larger value is refused unread, so a poison value costs no CPU or memory beyond
// etcd's own copy.
const MaxRecordBytes = 512 << 10

// MaxProblemText bounds each text field of a Problem: a Problem never carries a copy of
// a large key or value.
const MaxProblemText = 256

// Problem is a record of the store that a Mirror left out of its State, wholly or in
// part, and why. It says which record (Key, Kind, ID), whom it concerns (Host, for
// ports and statuses that decoded) and what is wrong (Class, Err), so that the agent
// can report it on its owner instead of stalling on it.
type Problem struct {
	// Key is the record's etcd key, e.g. /lanes/v1/ports/<id>.
	Key string `json:"key"`
	// Kind is the folder of the key: one of the Kind constants.
	Kind string `json:"kind"`
	// ID is the record's ID from its key (a host's name for hosts).
	ID string `json:"id"`
	// Host is the host a port or status names, when its value decoded.
	Host string `json:"host,omitempty"`
	// Class is one of the Problem constants.
	Class string `json:"class"`
	// Part is empty when the whole record is left out of the State. Otherwise the
	// record is in the State without the part named here, which only ever means less
	// access: "rule <id>" of a security group, "security_group <id>" of a port.
	Part string `json:"part,omitempty"`
	// Err says what is wrong, in words an operator can act on.
	Err string `json:"error"`
	// ModRevision is the revision of the record's value the problem was found in.
	ModRevision int64 `json:"mod_revision"`
}

// Whole reports whether the record is left out of the State entirely.
func (p Problem) Whole() bool { return p.Part == "" }

func (p Problem) String() string {
	what := p.Kind + " " + p.ID
	if p.Part != "" {
		what += " " + p.Part
	}
	return fmt.Sprintf("%s (%s): %s", what, p.Class, p.Err)
}

// ProblemsOf returns the problems of one record, by kind and ID.
func (st State) ProblemsOf(kind, id string) []Problem {
	var out []Problem
	for _, p := range st.Problems {
		if p.Kind == kind && p.ID == id {
			out = append(out, p)
		}
	}
	return out
}

// clip cuts s to at most n bytes on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = strings.ToValidUTF8(s[:n-3], "")
	return s + "..."
}

func (r *record[T]) problem(kind, id, host, class, part string, err error) Problem {
	return Problem{
		Key: clip(r.key, MaxProblemText), Kind: kind, ID: clip(id, MaxProblemText),
		Host: clip(host, MaxProblemText), Class: class, Part: clip(part, MaxProblemText),
		Err: clip(err.Error(), MaxProblemText), ModRevision: r.mod,
	}
}

// record is one key of the store as the mirror read it: the decoded value, or the
// problem that kept it from being used.
type record[T any] struct {
	v      T
	create int64 // create revision: the older of two conflicting records wins
	mod    int64
	key    string
	bad    *Problem
	parts  []Problem // parts dropped on their own merits (a group's invalid rules)
	// For ports: the mod revision of the network the port was last validated
	// against, and the outcome, so that a change elsewhere does not validate every
	// port again.
	vettedNet int64
	vetErr    error
}

// decodeRecord decodes kv's value into a T, refusing values larger than MaxRecordBytes
// unread.
func decodeRecord[T any](kv *mvccpb.KeyValue, kind, id string) *record[T] {
	r := &record[T]{create: kv.CreateRevision, mod: kv.ModRevision, key: string(kv.Key)}
	if len(kv.Value) > MaxRecordBytes {
		p := r.problem(kind, id, "", ProblemUndecodable, "",
			fmt.Errorf("value of %d bytes is larger than any valid record (%d bytes at most); not read", len(kv.Value), MaxRecordBytes))
		r.bad = &p
		return r
	}
	if err := json.Unmarshal(kv.Value, &r.v); err != nil {
		p := r.problem(kind, id, "", ProblemUndecodable, "", fmt.Errorf("not JSON of a %s record: %w", recordNames[kind], err))
		r.bad = &p
		var zero T
		r.v = zero
	}
	return r
}

// refuse marks r as left out for err, keeping nothing of its value but the host.
func (r *record[T]) refuse(kind, id, host, class string, err error) {
	p := r.problem(kind, id, host, class, "", err)
	r.bad = &p
	var zero T
	r.v = zero
}

func idMismatch(field, inRecord, inKey string) error {
	return &api.FieldError{Field: field, Value: inRecord, Reason: "differs from the ID in the key, " + clip(inKey, 64)}
}

func uuidKey(field, id string) error {
	if IsUUID(id) {
		return nil
	}
	return &api.FieldError{Field: field, Value: id, Reason: "key is not a lower-case UUID"}
}

func readNetwork(kv *mvccpb.KeyValue, id string) *record[api.Network] {
	r := decodeRecord[api.Network](kv, KindNetworks, id)
	if r.bad != nil {
		return r
	}
	err := uuidKey("network.id", id)
	if err == nil && r.v.ID != id {
		err = idMismatch("network.id", r.v.ID, id)
	}
	if err == nil {
		err = api.ValidateNetwork(&r.v, false)
	}
	if err != nil {
		r.refuse(KindNetworks, id, "", ProblemInvalid, err)
	}
	return r
}

// readPort checks what a port says on its own; the checks against its network happen
// when the State is built.
func readPort(kv *mvccpb.KeyValue, id string) *record[api.Port] {
	r := decodeRecord[api.Port](kv, KindPorts, id)
	if r.bad != nil {
		return r
	}
	err := uuidKey("port.id", id)
	if err == nil && r.v.ID != id {
		err = idMismatch("port.id", r.v.ID, id)
	}
	if err != nil {
		r.refuse(KindPorts, id, r.v.Host, ProblemInvalid, err)
	}
	return r
}

// readGroup keeps a group whose own fields are valid and drops, one by one, the rules
// that are not: a rule left out only takes away access.
func readGroup(kv *mvccpb.KeyValue, id string) *record[api.SecurityGroup] {
	r := decodeRecord[api.SecurityGroup](kv, KindGroups, id)
	if r.bad != nil {
		return r
	}
	err := uuidKey("sg.id", id)
	if err == nil && r.v.ID != id {
		err = idMismatch("sg.id", r.v.ID, id)
	}
	if err == nil {
		err = api.ValidateName("sg.name", r.v.Name)
	}
	if err == nil && len(r.v.Rules) > api.MaxRules {
		err = &api.FieldError{Field: "sg.rules", Reason: fmt.Sprintf("%d rules, at most %d per group", len(r.v.Rules), api.MaxRules)}
	}
	if err != nil {
		r.refuse(KindGroups, id, "", ProblemInvalid, err)
		return r
	}
	seen := map[string]bool{}
	r.v.Rules = slices.DeleteFunc(r.v.Rules, func(rule api.Rule) bool {
		err := api.ValidateRule(&rule)
		switch {
		case err != nil:
		case rule.ID == "":
			err = &api.FieldError{Field: "rule.id", Reason: "must be set"}
		case seen[rule.ID]:
			err = &api.FieldError{Field: "rule.id", Value: rule.ID, Reason: "used twice in the group; the first is kept"}
		}
		seen[rule.ID] = true
		if err != nil {
			r.parts = append(r.parts, r.problem(KindGroups, id, "", ProblemInvalid, "rule "+rule.ID, err))
			return true
		}
		return false
	})
	return r
}

func readHost(kv *mvccpb.KeyValue, name string) *record[api.Host] {
	r := decodeRecord[api.Host](kv, KindHosts, name)
	if r.bad != nil {
		return r
	}
	err := api.ValidateHost(&r.v)
	if err == nil && r.v.Name != name {
		err = idMismatch("host.name", r.v.Name, name)
	}
	if err != nil {
		r.refuse(KindHosts, name, "", ProblemInvalid, err)
		return r
	}
	r.v.Alive = false // derived from the alive key, never stored
	return r
}

func readStatus(kv *mvccpb.KeyValue, id string) *record[api.PortStatus] {
	r := decodeRecord[api.PortStatus](kv, KindStatus, id)
	if r.bad != nil {
		return r
	}
	err := validateStatus(&r.v)
	if err == nil && r.v.PortID != id {
		err = idMismatch("status.port_id", r.v.PortID, id)
	}
	if err != nil {
		r.refuse(KindStatus, id, r.v.Host, ProblemInvalid, err)
	}
	return r
}

// records is everything the mirror read, record by record, before the records are
// checked against each other.
type records struct {
	networks map[string]*record[api.Network]
	ports    map[string]*record[api.Port]
	groups   map[string]*record[api.SecurityGroup]
	hosts    map[string]*record[api.Host]
	statuses map[string]*record[api.PortStatus]
	alive    map[string]bool // hosts whose alive key (under their lease) exists
	routers  map[string]*record[api.Router]
	fips     map[string]*record[api.FloatingIP]
}

// clone copies rs for a build outside the mirror's lock: the maps, and each port's
// record, since a build writes what it learns of a port into its record (vettedNet,
// judgePort). Nothing else in a record changes once read, so the others stay shared.
func (rs *records) clone() *records {
	ports := make(map[string]*record[api.Port], len(rs.ports))
	for id, r := range rs.ports {
		cp := *r
		ports[id] = &cp
	}
	return &records{
		networks: maps.Clone(rs.networks),
		ports:    ports,
		groups:   maps.Clone(rs.groups),
		hosts:    maps.Clone(rs.hosts),
		statuses: maps.Clone(rs.statuses),
		alive:    maps.Clone(rs.alive),
		routers:  maps.Clone(rs.routers),
		fips:     maps.Clone(rs.fips),
	}
}

func newRecords() *records {
	return &records{
		networks: map[string]*record[api.Network]{},
		ports:    map[string]*record[api.Port]{},
		groups:   map[string]*record[api.SecurityGroup]{},
		hosts:    map[string]*record[api.Host]{},
		statuses: map[string]*record[api.PortStatus]{},
		alive:    map[string]bool{},
		routers:  map[string]*record[api.Router]{},
		fips:     map[string]*record[api.FloatingIP]{},
	}
}

// claims hands out things two records must not share to the oldest claimant.
type claims map[claim]string

// claim is one thing a record claims: a VNI, a MAC or IP within a network (scope: the
// network's VNI, unique among the networks kept), ...
type claim struct {
	what  claimKind
	scope uint32
	value string
}

type claimKind uint8

const (
	claimVNI claimKind = iota
	claimTunnelIP
	claimDevice
	claimMAC
	claimIP
)

// take gives c to owner unless someone has it; it returns the holder otherwise.
func (cs claims) take(c claim, owner string) (holder string, ok bool) {
	if h, taken := cs[c]; taken && h != owner {
		return h, false
	}
	cs[c] = owner
	return owner, true
}

// byAge lists the IDs of the records that read well, oldest (lowest create revision)
// first, then by ID (records created in one transaction).
func byAge[T any](m map[string]*record[T]) []string {
	type aged struct {
		create int64
		id     string
	}
	list := make([]aged, 0, len(m))
	for id, r := range m {
		if r.bad == nil {
			list = append(list, aged{r.create, id})
		}
	}
	slices.SortFunc(list, func(a, b aged) int { return cmp.Or(cmp.Compare(a.create, b.create), strings.Compare(a.id, b.id)) })
	ids := make([]string, len(list))
	for i, a := range list {
		ids[i] = a.id
	}
	return ids
}

// build checks the records against each other and returns the State an agent may act
// on: only records that decode and validate, with what they claim uncontested and what
// they name present; everything else is in Problems.
func (rs *records) build(rev int64) State {
	st, _ := rs.buildIndexed(rev)
	return st
}

// buildIndexed is build, and also returns how the ports' claims fell out, so that the
// mirror can patch the State for the next change of a few ports (patch.go).
func (rs *records) buildIndexed(rev int64) (State, *portIndex) {
	st := State{
		Revision: rev,
		Networks: make(map[string]api.Network, len(rs.networks)),
		Ports:    make(map[string]*api.Port, len(rs.ports)),
		Groups:   make(map[string]api.SecurityGroup, len(rs.groups)),
		Hosts:    make(map[string]api.Host, len(rs.hosts)),
		Statuses: make(map[string]api.PortStatus, len(rs.statuses)),

		Routers:     make(map[string]api.Router, len(rs.routers)),
		FloatingIPs: make(map[string]api.FloatingIP, len(rs.fips)),
	}
	ix := newPortIndex()
	var probs []Problem
	addBad := func(p *Problem, parts []Problem) {
		if p != nil {
			probs = append(probs, *p)
		}
		probs = append(probs, parts...)
	}
	for _, r := range rs.networks {
		addBad(r.bad, nil)
	}
	for _, r := range rs.groups {
		addBad(r.bad, r.parts)
	}
	for id, r := range rs.ports {
		if r.bad != nil {
			probs = append(probs, *r.bad)
			ix.probs[id] = []Problem{*r.bad}
		}
	}
	for _, r := range rs.hosts {
		addBad(r.bad, nil)
	}
	for id, r := range rs.statuses {
		if r.bad != nil {
			probs = append(probs, *r.bad)
			ix.statusProbs[id] = *r.bad
		}
	}

	// Networks: one per VNI, the oldest. A newer network with a taken VNI is left out
	// (with its ports) rather than both: the older one carries traffic already.
	left := map[string]string{} // network ID -> why it is left out
	vnis := make(claims, len(rs.networks))
	for _, id := range byAge(rs.networks) {
		r := rs.networks[id]
		if r.v.External { // no VNI; its addresses are the routers' and floating IPs'
			st.Networks[id] = r.v
			continue
		}
		if holder, ok := vnis.take(claim{claimVNI, r.v.VNI, ""}, id); !ok {
			err := fmt.Errorf("VNI %d is also network %s's, which is older and keeps it", r.v.VNI, holder)
			probs = append(probs, r.problem(KindNetworks, id, "", ProblemConflict, "", err))
			left[id] = err.Error()
			continue
		}
		st.Networks[id] = r.v
	}
	for id, r := range rs.networks {
		if r.bad != nil {
			left[id] = r.bad.Err
		}
	}
	ix.left = left

	// Groups: a rule naming a remote group that is not there is dropped; a remote
	// group nobody can be a member of would allow nothing anyway.
	for id, r := range rs.groups {
		if r.bad != nil {
			continue
		}
		// The State shares the records' slices (Snapshot hands out copies), so the
		// group is copied before a rule is taken out.
		g := r.v
		usable := func(rule api.Rule) bool {
			if rule.RemoteGroupID == "" || rule.RemoteGroupID == id {
				return true
			}
			rg, ok := rs.groups[rule.RemoteGroupID]
			return ok && rg.bad == nil
		}
		if !all(g.Rules, usable) {
			g = cloneGroup(g)
			g.Rules = slices.DeleteFunc(g.Rules, func(rule api.Rule) bool {
				if usable(rule) {
					return false
				}
				probs = append(probs, r.problem(KindGroups, id, "", ProblemDangling, "rule "+rule.ID,
					fmt.Errorf("remote group %s is not a usable security group", clip(rule.RemoteGroupID, 64))))
				return true
			})
		}
		st.Groups[id] = g
	}

	// Ports, oldest first, so that an older port keeps its MAC, IPs and device names
	// when a newer one claims them too. Only older ports have taken anything when a
	// port is judged, so whoever holds a claim is older.
	taken := ix.holder
	heldBy := func(c claim) string { return taken[c] }
	var buf [2 + api.MaxFixedIPs]claim
	for _, id := range byAge(rs.ports) {
		r := rs.ports[id]
		v := rs.judgePort(id, r, &st, left, heldBy, buf[:0])
		if len(v.probs) > 0 {
			probs = append(probs, v.probs...)
			ix.probs[id] = v.probs
		}
		switch {
		case v.kept:
			for _, c := range v.want {
				taken[c] = id
			}
			p := v.port
			st.Ports[id] = &p
		case v.want != nil:
			ix.addLost(id, slices.Clone(v.want))
		}
	}

	// Hosts: a tunnel IP belongs to one host; two would share one tunnel port.
	tips := make(claims, len(rs.hosts))
	for _, name := range byAge(rs.hosts) {
		r := rs.hosts[name]
		if holder, ok := tips.take(claim{claimTunnelIP, 0, r.v.TunnelIP}, name); !ok {
			probs = append(probs, r.problem(KindHosts, name, "", ProblemConflict, "",
				fmt.Errorf("tunnel IP %s is also host %s's, which registered first", r.v.TunnelIP, holder)))
			continue
		}
		h := r.v
		h.Alive = rs.alive[name]
		st.Hosts[name] = h
	}

	for id, r := range rs.statuses {
		if r.bad == nil {
			st.Statuses[id] = r.v
		}
	}
	probs = append(probs, rs.buildL3(&st)...) // l3records.go
	ix.l3refs = rs.l3PortRefs()

	slices.SortFunc(probs, compareProblems)
	st.Problems = probs
	return st, ix
}

// compareProblems is the order of State.Problems.
func compareProblems(a, b Problem) int {
	return cmp.Or(strings.Compare(a.Key, b.Key), strings.Compare(a.Part, b.Part), strings.Compare(a.Err, b.Err))
}

func (st *State) hasGroup(id string) bool { _, ok := st.Groups[id]; return ok }

// portVerdict is what became of one port in a State.
type portVerdict struct {
	kept bool
	port api.Port // as kept: without the groups it cannot use
	// want is what the port claims, when it got as far as claiming (kept, or left
	// out for a conflict); nil when it failed before (undecodable, invalid, dangling).
	want  []claim
	probs []Problem // whole or per part, in a fixed order
}

// judgePort checks the port r (key ID id) on its own, against its network (kept in
// st.Networks, or left out for the reason in left) and st's groups, and against the
// claims of the ports older than it: heldBy names the older port holding a claim, or
// "". The port's claims are appended to buf.
func (rs *records) judgePort(id string, r *record[api.Port], st *State, left map[string]string, heldBy func(claim) string, buf []claim) portVerdict {
	if r.bad != nil {
		return portVerdict{probs: []Problem{*r.bad}}
	}
	p := r.v
	whole := func(class string, err error) []Problem {
		return []Problem{r.problem(KindPorts, id, p.Host, class, "", err)}
	}
	n, ok := st.Networks[p.NetworkID]
	if !ok {
		if why, known := left[p.NetworkID]; known {
			return portVerdict{probs: whole(ProblemDangling, fmt.Errorf("network %s is left out: %s", clip(p.NetworkID, 64), why))}
		}
		return portVerdict{probs: whole(ProblemDangling, fmt.Errorf("network %s does not exist", clip(p.NetworkID, 64)))}
	}
	if nr := rs.networks[p.NetworkID]; r.vettedNet != nr.mod {
		r.vettedNet, r.vetErr = nr.mod, api.ValidatePort(&p, &n, false)
	}
	if r.vetErr != nil {
		return portVerdict{probs: whole(ProblemInvalid, r.vetErr)}
	}
	// Validated: the MAC is six two-digit octets, the IPs are canonical IPv4 or IPv6.
	want := portClaims(buf, &p, n.VNI)
	for _, c := range want {
		if h := heldBy(c); h != "" && h != id {
			what := map[claimKind]string{claimDevice: "device name " + api.TapName(p.ID), claimMAC: "MAC " + c.value, claimIP: "IP " + c.value}[c.what]
			return portVerdict{want: want, probs: whole(ProblemConflict, fmt.Errorf("%s is also port %s's, which is older and keeps it", what, h))}
		}
	}
	// An unknown group is dropped: a group allows traffic, so without it the port has
	// less access than intended, never more.
	var probs []Problem
	if !all(p.SecurityGroups, st.hasGroup) {
		p = clonePort(p)
		p.SecurityGroups = slices.DeleteFunc(p.SecurityGroups, func(g string) bool {
			if st.hasGroup(g) {
				return false
			}
			probs = append(probs, r.problem(KindPorts, id, p.Host, ProblemDangling, "security_group "+g,
				fmt.Errorf("security group %s is not a usable security group; the port goes without it", clip(g, 64))))
			return true
		})
	}
	return portVerdict{kept: true, port: p, want: want, probs: probs}
}

// portClaims appends to buf what a port of a network with the given VNI claims: its
// device names, and its MAC and IPs within the network.
func portClaims(buf []claim, p *api.Port, vni uint32) []claim {
	buf = append(buf, claim{claimDevice, 0, p.ID[:api.DeviceIDLen]}, claim{claimMAC, vni, strings.ToLower(p.MAC)})
	for _, a := range p.FixedIPs {
		buf = append(buf, claim{claimIP, vni, a})
	}
	return buf
}

// all reports whether ok holds for every element of s.
func all[T any](s []T, ok func(T) bool) bool {
	for _, v := range s {
		if !ok(v) {
			return false
		}
	}
	return true
}
