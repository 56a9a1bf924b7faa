package hostwire

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// FirewallOptions configure a Firewall.
type FirewallOptions struct {
	// IPTables is the iptables binary whose family (iptables-save/-restore,
	// ip6tables-save/-restore in the same directory) is used. Empty means the
	// "iptables" found in $PATH, which is what go-iptables would use, so lanes and
	// other software on the host share one backend (nft here).
	IPTables string
	// IPSet is the ipset binary; empty means "ipset" from $PATH.
	IPSet string
	Log   *slog.Logger
	// Backend is BackendNFT or BackendLegacy: use iptables-nft or iptables-legacy
	// (next to IPTables). Empty: whatever IPTables is, as `iptables --version` says.
	Backend string
	// Observe, when set, is told how long each bulk write took: one iptables-restore
	// per table (what is TableID.String(), e.g. "IPv4/filter") or one ipset restore
	// (what is "ipset"). It is called from Apply's goroutines, concurrently.
	Observe func(what string, took time.Duration, err error)
	// ForgetEvery bounds how often connections are forgotten because rules or
	// remote-group members narrowed what ports admit: each time walks the whole
	// conntrack table (see forgetConnections), so under churn (members leaving one
	// after another) the walks are paced at most one per ForgetEvery, each for all
	// the narrowings since the last, and a narrowing waits at most that long. Zero:
	// every Apply that narrows walks at once. The entries of removed ports' zones are
	// always deleted at once, before the zone can be given to another port.
	ForgetEvery time.Duration
}

// The two iptables backends. Rules written through one are invisible to the other, so
// lanes chains must live in one only.
const (
	BackendNFT    = "nft"
	BackendLegacy = "legacy"
)

// xtablesWait is how long iptables-restore waits for the xtables lock that another
// program (kube-proxy, docker, an operator's iptables -A) holds, instead of failing.
const xtablesWait = "5"

// Firewall keeps the lanes chains, hooks and ipsets of one host namespace equal to a
// desired FirewallState. It writes only what changed: one `ipset restore` for changed
// sets, one `iptables-restore --noflush` per changed table touching only changed lanes
// chains, and nothing at all when nothing changed. Rules of other software are never
// touched.
type Firewall struct {
	host    *Host
	log     *slog.Logger
	observe func(string, time.Duration, error)
	bins    map[string]string
	backend string // BackendNFT or BackendLegacy
	toolDir string // iptables' directory, where the other backend's tools are too

	mu sync.Mutex
	// applied is what lanes last wrote (or found) per table: chain -> rules. A chain
	// whose content is unknown (found at start) maps to nil.
	applied map[TableID]map[string][]string
	hooked  map[TableID]bool
	// sets maps existing lanes ipsets to their last written members (nil: unknown).
	sets  map[string][]string
	zones map[string]int // device ID -> conntrack zone
	// admitted is what each port's rules admitted when last applied (device ID ->
	// admission); connections only that admitted are forgotten when it narrows.
	admitted map[string]portAdmission
	// rendered are the remote-group sets of the last Render, reused by the next one
	// for every set whose members did not change.
	rendered map[string]*IPSet
	// found are the lanes chains' rules and the lanes sets' members as Resync read
	// them (iptables-save, ipset save), for chains and sets whose content is unknown:
	// one equal to what Apply wants is taken as written, so a restarted lanesd on an
	// unchanged host rewrites nothing. Anything that differs, in substance or only in
	// how the tools print it, is rewritten whole, as unknown content always was.
	found     map[TableID]map[string][]string
	foundSets map[string][]string

	// forgetEvery paces the walks for narrowed admissions (FirewallOptions); walked
	// is when the last one ran, latest the admissions of the last Apply, and
	// forgetLater the timer of a walk put off, if one is.
	forgetEvery time.Duration
	walked      time.Time
	latest      map[string]portAdmission
	forgetLater *time.Timer
}

// ApplyStats tells what an Apply wrote.
type ApplyStats struct {
	Tables        int // iptables-restore runs
	ChainsWritten int // chains declared and filled
	ChainsDeleted int
	SetsWritten   int
	SetsDeleted   int
	// ConnsForgotten counts the conntrack entries deleted because no rule admits
	// them any more.
	ConnsForgotten int
}

// Changed reports whether anything was written.
func (s ApplyStats) Changed() bool {
	return s.Tables+s.ChainsWritten+s.ChainsDeleted+s.SetsWritten+s.SetsDeleted > 0
}

// NewFirewall reads the current lanes chains, hooks, conntrack zones and ipsets of the
// host, so that zones stay stable across restarts and leftovers are removed by the
// first Apply.
func NewFirewall(h *Host, opts FirewallOptions) (*Firewall, error) {
	f := &Firewall{host: h, log: opts.Log, observe: opts.Observe, bins: map[string]string{}, admitted: map[string]portAdmission{},
		forgetEvery: opts.ForgetEvery}
	if f.log == nil {
		f.log = slog.Default()
	}
	if f.observe == nil {
		f.observe = func(string, time.Duration, error) {}
	}
	ipt := opts.IPTables
	if ipt == "" {
		ipt = "iptables"
	}
	p, err := exec.LookPath(ipt)
	if err != nil {
		return nil, fmt.Errorf("find iptables: %w", err)
	}
	dir, base := filepath.Dir(p), filepath.Base(p)
	switch opts.Backend {
	case "":
	case BackendNFT, BackendLegacy:
		base = "iptables-" + opts.Backend
		if p, err = exec.LookPath(filepath.Join(dir, base)); err != nil {
			return nil, fmt.Errorf("iptables backend %s: %w", opts.Backend, err)
		}
	default:
		return nil, &api.FieldError{Field: "iptables-backend", Value: opts.Backend, Reason: "must be nft or legacy"}
	}
	if f.backend, err = detectBackend(h, p); err != nil {
		return nil, err
	}
	// iptables, iptables-nft, iptables-legacy: keep the suffix for the whole family.
	suffix := strings.TrimPrefix(base, "iptables")
	for _, tool := range []string{"iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore"} {
		name := strings.Replace(tool, "tables-", "tables"+suffix+"-", 1)
		f.bins[tool] = filepath.Join(dir, name)
	}
	ipset := opts.IPSet
	if ipset == "" {
		ipset = "ipset"
	}
	if f.bins["ipset"], err = exec.LookPath(ipset); err != nil {
		return nil, fmt.Errorf("find ipset: %w", err)
	}
	f.toolDir = dir
	if err := f.OtherBackendChains(); err != nil {
		return nil, err
	}
	if err := f.Resync(context.Background()); err != nil {
		return nil, err
	}
	return f, nil
}

// Backend is the iptables backend the firewall writes through: nft or legacy.
func (f *Firewall) Backend() string { return f.backend }

// detectBackend asks the iptables binary which backend it is, as go-iptables does:
// `iptables --version` says "(nf_tables)" or "(legacy)".
func detectBackend(h *Host, bin string) (string, error) {
	out, err := h.Exec(context.Background(), nil, bin, "--version")
	if err != nil {
		return "", fmt.Errorf("iptables --version: %w", err)
	}
	return parseBackend(string(out))
}

func parseBackend(version string) (string, error) {
	switch {
	case strings.Contains(version, "nf_tables"):
		return BackendNFT, nil
	case strings.Contains(version, "legacy"):
		return BackendLegacy, nil
	case strings.HasPrefix(strings.TrimSpace(version), "iptables v1.4"), strings.HasPrefix(strings.TrimSpace(version), "iptables v1.6"):
		return BackendLegacy, nil // before 1.8 there was only the legacy backend
	}
	return "", fmt.Errorf("iptables --version %q: neither nf_tables nor legacy", strings.TrimSpace(version))
}

// OtherBackendChains fails when the other backend holds lanes chains: a previous
// lanesd (or a host whose iptables alternative changed) wrote them, and both sets
// would filter the same packets, the old one never updated again. NewFirewall
// refuses to start on it; a running lanesd asks again now and then, since someone
// may switch the alternative and restore old rules under it.
func (f *Firewall) OtherBackendChains() error {
	dir := f.toolDir
	other := BackendLegacy
	if f.backend == BackendLegacy {
		other = BackendNFT
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		if other == BackendLegacy && !f.legacyTablesLoaded(tool) {
			continue // no legacy table exists; asking would load x_tables modules
		}
		bin, err := exec.LookPath(filepath.Join(dir, tool+"-"+other+"-save"))
		if err != nil {
			continue // the other backend is not installed: nothing can be there
		}
		out, err := f.host.Exec(context.Background(), nil, bin)
		if err != nil {
			continue // e.g. no legacy kernel modules: no rules either
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, ":"+ChainPrefix) || strings.HasPrefix(l, "-A "+ChainPrefix) {
				return fmt.Errorf("%s rules of the %s backend hold lanes chains (%s): lanesd uses %s; remove them (%s-save shows them) or start lanesd with --iptables-backend %s",
					tool, other, strings.Fields(l)[0][1:], f.backend, tool+"-"+other, other)
			}
		}
	}
	return nil
}

// legacyTablesLoaded reports whether the host namespace has legacy iptables tables:
// the kernel lists them in ip_tables_names (ip6_tables_names) once one exists.
func (f *Firewall) legacyTablesLoaded(tool string) bool {
	name := "/proc/thread-self/net/ip_tables_names"
	if tool == "ip6tables" {
		name = "/proc/thread-self/net/ip6_tables_names"
	}
	var b []byte
	_ = f.host.Do(func() error {
		var err error
		b, err = os.ReadFile(name)
		return err
	})
	return len(bytes.TrimSpace(b)) > 0
}

func (f *Firewall) saveBin(fam Family) string {
	if fam == V6 {
		return f.bins["ip6tables-save"]
	}
	return f.bins["iptables-save"]
}

func (f *Firewall) restoreBin(fam Family) string {
	if fam == V6 {
		return f.bins["ip6tables-restore"]
	}
	return f.bins["iptables-restore"]
}

// savedTable is a parsed `iptables-save -t T`.
type savedTable struct {
	chains []string            // every chain declared
	rules  map[string][]string // chain -> rule specs
}

func parseSave(out []byte) savedTable {
	st := savedTable{rules: map[string][]string{}}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ":"):
			if i := strings.IndexByte(line, ' '); i > 1 {
				st.chains = append(st.chains, line[1:i])
			}
		case strings.HasPrefix(line, "-A "):
			rest := line[3:]
			chain, spec, _ := strings.Cut(rest, " ")
			st.rules[chain] = append(st.rules[chain], spec)
		}
	}
	return st
}

func (f *Firewall) save(ctx context.Context, id TableID) (savedTable, error) {
	out, err := f.host.Exec(ctx, nil, f.saveBin(id.Family), "-t", id.Table)
	if err != nil {
		return savedTable{}, fmt.Errorf("read %s: %w", id, err)
	}
	return parseSave(out), nil
}

var zoneRe = regexp.MustCompile(`--physdev-in (?:tap|qvb)(\S+) .*-j CT --zone (\d+)`)

// Resync forgets what was applied and reads the host again: the next Apply rewrites
// every lanes chain and set once. Use it after something outside lanes may have
// changed the tables (e.g. a firewall service reload).
func (f *Firewall) Resync(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = map[TableID]map[string][]string{}
	f.hooked = map[TableID]bool{}
	f.sets = map[string][]string{}
	f.zones = map[string]int{}
	// The four saves are independent processes: at once, a start waits for the
	// slowest, not the sum.
	saved := make([]savedTable, len(Tables))
	errs := make([]error, len(Tables))
	var wg sync.WaitGroup
	for i, id := range Tables {
		wg.Add(1)
		go func() {
			defer wg.Done()
			saved[i], errs[i] = f.save(ctx, id)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	f.found = map[TableID]map[string][]string{}
	for i, id := range Tables {
		st := saved[i]
		cur := map[string][]string{}
		found := map[string][]string{}
		for _, c := range st.chains {
			if strings.HasPrefix(c, ChainPrefix) {
				cur[c] = nil
				found[c] = st.rules[c]
			}
		}
		f.applied[id] = cur
		f.found[id] = found
		f.hooked[id] = hooksPresent(id, st)
		if id.Table == "raw" && id.Family == V4 {
			for _, r := range st.rules[ChainPrerouting] {
				if m := zoneRe.FindStringSubmatch(r); m != nil {
					z, _ := strconv.Atoi(m[2])
					f.zones[m[1]] = z
				}
			}
		}
	}
	if err := f.refreshSets(ctx); err != nil {
		return err
	}
	out, err := f.host.Exec(ctx, nil, f.bins["ipset"], "save")
	if err != nil {
		return fmt.Errorf("read ipsets: %w", err)
	}
	f.foundSets = parseIPSetSave(string(out))
	return nil
}

// sameSavedRule reports whether saved, a rule as iptables-save prints it, is the
// rendered rule: iptables prints MACs in lower case, Neutron's rules (and lanes')
// write them in upper case.
func sameSavedRule(saved, rendered string) bool {
	if saved == rendered {
		return true
	}
	const mac = "--mac-source "
	i := strings.Index(rendered, mac)
	if i < 0 || len(rendered) < i+len(mac)+17 {
		return false
	}
	j := i + len(mac) + 17
	return saved == rendered[:i]+mac+strings.ToLower(rendered[i+len(mac):j])+rendered[j:]
}

// parseIPSetSave returns the sorted members of each lanes set in `ipset save`
// output; a set with an entry lanes never writes (options after the member) is left
// out, as unknown.
func parseIPSetSave(out string) map[string][]string {
	sets := map[string][]string{}
	odd := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || !(strings.HasPrefix(f[1], SetPrefix4) || strings.HasPrefix(f[1], SetPrefix6)) {
			continue
		}
		switch {
		case f[0] == "create":
			if sets[f[1]] == nil {
				sets[f[1]] = []string{}
			}
		case f[0] == "add" && len(f) == 3:
			sets[f[1]] = append(sets[f[1]], f[2])
		default:
			odd[f[1]] = true
		}
	}
	for n := range odd {
		delete(sets, n)
	}
	for _, m := range sets {
		sort.Strings(m)
	}
	return sets
}

// hooksPresent reports whether each hook of the table appears exactly once.
func hooksPresent(id TableID, st savedTable) bool {
	for _, h := range hooks[id.Table] {
		n := 0
		for _, r := range st.rules[h.Chain] {
			if strings.HasSuffix(r, "-j "+h.Target) {
				n++
			}
		}
		if n != 1 {
			return false
		}
	}
	return true
}

// Zones returns the conntrack zone of each port, keyed by device ID.
func (f *Firewall) Zones() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.zones))
	for k, v := range f.zones {
		out[k] = v
	}
	return out
}

// assignZones gives every port a zone: its current one, else the highest in use + 1,
// else the first free one (Neutron's ip_conntrack allocation). Zones of ports that are
// gone are freed first.
func (f *Firewall) assignZones(ports []FirewallPort) (released []int, err error) {
	want := map[string]bool{}
	for _, p := range ports {
		want[DeviceID(p.ID)] = true
	}
	used := map[int]bool{}
	maxZ := ZoneStart - 1
	for id, z := range f.zones {
		if !want[id] {
			delete(f.zones, id)
			released = append(released, z)
			continue
		}
		used[z] = true
		maxZ = max(maxZ, z)
	}
	next := func() (int, error) {
		if maxZ < ZoneMax {
			maxZ++
			return maxZ, nil
		}
		for z := ZoneStart; z <= ZoneMax; z++ {
			if !used[z] {
				return z, nil
			}
		}
		return 0, errors.New("no free conntrack zone")
	}
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if _, ok := f.zones[id]; ok {
			continue
		}
		z, err := next()
		if err != nil {
			return released, err
		}
		used[z] = true
		f.zones[id] = z
	}
	for i := range ports {
		ports[i].Zone = f.zones[DeviceID(ports[i].ID)]
	}
	return released, nil
}

// Apply makes the host's lanes chains and sets equal to the desired state. Zones are
// assigned here; FirewallPort.Zone in st is ignored.
func (f *Firewall) Apply(ctx context.Context, st FirewallState) (ApplyStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var stats ApplyStats
	st.Ports = append([]FirewallPort(nil), st.Ports...)
	released, err := f.assignZones(st.Ports)
	if err != nil {
		return stats, err
	}
	rs, err := render(st, f.rendered)
	if err != nil {
		return stats, fmt.Errorf("render firewall: %w", err)
	}
	f.rendered = rs.Sets
	// Sets first: new rules may reference them.
	if err := f.writeSets(ctx, rs, &stats); err != nil {
		return stats, err
	}
	// The four tables are independent: write them at once, each in its own
	// iptables-restore, so a port add costs the slowest restore, not the sum.
	results := make([]tableResult, len(Tables))
	var wg sync.WaitGroup
	for i, id := range Tables {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = f.writeTable(ctx, id, rs.Tables[id])
		}()
	}
	wg.Wait()
	var errs []error
	for i, r := range results {
		id := Tables[i]
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		applied := f.applied[id]
		for _, c := range append(r.changed, r.adopted...) {
			applied[c] = rs.Tables[id].Chains[c]
		}
		delete(f.found, id)
		for _, c := range r.gone {
			delete(applied, c)
		}
		f.hooked[id] = true
		if r.wrote {
			stats.Tables++
			stats.ChainsWritten += len(r.changed)
			stats.ChainsDeleted += len(r.gone)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return stats, err
	}
	// Unused sets last: the rules that referenced them are gone now.
	if err := f.deleteSets(ctx, rs, &stats); err != nil {
		return stats, err
	}
	// The new rules are in place: forget the connections of removed ports and those
	// only removed rules and members admitted; none can start again in between.
	f.latest = rs.admits
	if len(released) == 0 && f.forgetEvery > 0 && time.Since(f.walked) < f.forgetEvery {
		f.forgetSoon()
		return stats, nil
	}
	n, err := f.forgetConnections(released, rs.admits)
	stats.ConnsForgotten = n
	return stats, err
}

// forgetSoon puts the walk for the admissions narrowed since the last one off until
// forgetEvery after that one; f.mu is held. The walk then compares what was admitted
// at the last walk with what the latest Apply admits, so it covers every narrowing in
// between, and none that was undone.
func (f *Firewall) forgetSoon() {
	if f.forgetLater != nil {
		return
	}
	f.forgetLater = time.AfterFunc(time.Until(f.walked.Add(f.forgetEvery)), func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.forgetLater = nil
		// A failed walk keeps the old admissions, so the next Apply (a change, or
		// lanesd's periodic full pass) finds the narrowing again and retries.
		if n, err := f.forgetConnections(nil, f.latest); err != nil {
			f.log.Warn("forget connections", "err", err)
		} else if n > 0 {
			f.log.Debug("forgot connections of narrowed admissions, paced", "entries", n)
		}
	})
}

// forgetConnections deletes conntrack entries, no process:
//   - every entry of the zones in released, whose ports are gone, so a port that
//     reuses the zone later starts with no state and a deleted port's connection is
//     not kept alive by a stale entry;
//   - in the zones of ports whose rules now admit less than when last applied (a
//     rule removed, a remote-group member gone, the port's groups changed), the
//     entries the old rules admitted and the new ones do not.
//
// A dump walks every bucket of the kernel's conntrack hash, which all namespaces
// share (nf_conntrack_buckets, 262144 on a large host: ~13 ms of kernel time
// however few entries there are), so the walks are few: none when admissions only
// widened (a member or a rule added), one dump of both families to find the
// entries, and a delete pass per family only when it found some.
func (f *Firewall) forgetConnections(released []int, now map[string]portAdmission) (int, error) {
	var filters []netlink.CustomConntrackFilter
	for _, z := range released {
		cf := &netlink.ConntrackFilter{}
		if err := cf.AddZone(uint16(z)); err != nil {
			return 0, err
		}
		filters = append(filters, cf)
	}
	rv := revoked{zones: map[uint16][2]portAdmission{}}
	var narrowed []string
	for id, cur := range now {
		if old, ok := f.admitted[id]; ok && old.zone == cur.zone && !cur.covers(&old) {
			rv.zones[uint16(cur.zone)] = [2]portAdmission{old, cur}
			narrowed = append(narrowed, id)
		}
	}
	if len(rv.zones) > 0 {
		filters = append(filters, rv)
	}
	if len(filters) == 0 {
		f.admitted = now
		return 0, nil
	}
	var n uint
	f.walked = time.Now()
	err := f.host.Do(func() error {
		// AF_UNSPEC dumps both families in one walk of the table.
		flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, unix.AF_UNSPEC)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return fmt.Errorf("list conntrack: %w", err)
		}
		interrupted := err != nil
		fams := map[netlink.InetFamily]bool{}
		for _, fl := range flows {
			if slices.ContainsFunc(filters, func(cf netlink.CustomConntrackFilter) bool { return cf.MatchConntrackFlow(fl) }) {
				fams[netlink.InetFamily(fl.FamilyType)] = true
			}
		}
		var errs []error
		for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
			// An interrupted dump may have missed entries: look again per family.
			if !fams[fam] && !interrupted {
				continue
			}
			m, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, fam, filters...)
			n += m
			if err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		// Keep the old admissions: the next Apply tries the narrowed ports again.
		return int(n), fmt.Errorf("forget connections (zones of removed ports %v, ports whose rules admit less %v): %w", released, narrowed, err)
	}
	f.admitted = now
	if n > 0 {
		f.log.Debug("forgot connections", "entries", n, "removed_zones", len(released), "narrowed_ports", len(narrowed))
	}
	return int(n), nil
}

// tableResult is what writeTable did to one table.
type tableResult struct {
	changed, gone []string
	// adopted are chains of unknown content that Resync found as wanted.
	adopted []string
	wrote   bool
	err     error
}

// writeTable writes the changed lanes chains of one table (and the hooks, the first
// time) in one iptables-restore. It only reads the Firewall's state, so the tables can
// be written concurrently; Apply records the results.
func (f *Firewall) writeTable(ctx context.Context, id TableID, t *Table) tableResult {
	applied := f.applied[id]
	var r tableResult
	for _, c := range sortedKeys(t.Chains) {
		old, ok := applied[c]
		if ok && old == nil {
			if found, ok := f.found[id][c]; ok && slices.EqualFunc(found, t.Chains[c], sameSavedRule) {
				r.adopted = append(r.adopted, c)
				continue
			}
		}
		if !ok || old == nil || !slices.Equal(old, t.Chains[c]) {
			r.changed = append(r.changed, c)
		}
	}
	for _, c := range sortedKeys(applied) {
		if _, ok := t.Chains[c]; !ok {
			r.gone = append(r.gone, c)
		}
	}
	var fix []string
	if !f.hooked[id] {
		st, err := f.save(ctx, id)
		if err != nil {
			return tableResult{err: err}
		}
		fix = hookFix(id, st)
	}
	if len(r.changed) == 0 && len(r.gone) == 0 && len(fix) == 0 {
		return r
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%s\n", id.Table)
	// Shared chains (dispatch, zones) hold a few rules per port: when one port comes
	// or goes, edit them in place instead of rewriting hundreds of rules.
	edits := map[string][]string{}
	for _, c := range r.changed {
		if e, ok := editChain(c, applied[c], t.Chains[c]); ok {
			edits[c] = e
			continue
		}
		fmt.Fprintf(&b, ":%s - [0:0]\n", c)
	}
	// With --noflush a declared chain is created or flushed; a chain must be empty
	// before -X deletes it.
	for _, c := range r.gone {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c)
	}
	for _, c := range r.changed {
		if e, ok := edits[c]; ok {
			for _, l := range e {
				b.WriteString(l + "\n")
			}
			continue
		}
		for _, rule := range t.Chains[c] {
			fmt.Fprintf(&b, "-A %s %s\n", c, rule)
		}
	}
	for _, l := range fix {
		b.WriteString(l + "\n")
	}
	for _, c := range r.gone {
		fmt.Fprintf(&b, "-X %s\n", c)
	}
	b.WriteString("COMMIT\n")
	if err := f.bulk(ctx, id.String(), b.Bytes(), f.restoreBin(id.Family), "-w", xtablesWait, "--noflush"); err != nil {
		return tableResult{err: fmt.Errorf("apply %s: %w", id, err)}
	}
	r.wrote = true
	f.log.Debug("firewall table written", "table", id.String(), "chains", len(r.changed), "deleted", len(r.gone), "hooks", len(fix))
	return r
}

// bulk runs one bulk write (a restore fed on stdin) and tells the observer its time.
func (f *Firewall) bulk(ctx context.Context, what string, stdin []byte, name string, args ...string) error {
	start := time.Now()
	_, err := f.host.Exec(ctx, stdin, name, args...)
	f.observe(what, time.Since(start), err)
	return err
}

// editChain returns restore lines that turn a chain holding old into one holding new
// by deleting and inserting single rules, when that is much less than rewriting it:
// the rules both hold must keep their order, and at most a quarter of new may change.
func editChain(chain string, old, new []string) ([]string, bool) {
	if len(old) == 0 || len(new) < 8 {
		return nil, false
	}
	inNew := make(map[string]bool, len(new))
	for _, r := range new {
		inNew[r] = true
	}
	if len(inNew) != len(new) || hasDuplicates(old) {
		return nil, false // -D would remove the first of two equal rules: rewrite
	}
	var lines, kept []string
	for _, r := range old {
		if inNew[r] {
			kept = append(kept, r)
		} else {
			lines = append(lines, fmt.Sprintf("-D %s %s", chain, r))
		}
	}
	inKept := make(map[string]bool, len(kept))
	for _, r := range kept {
		inKept[r] = true
	}
	k := 0
	for i, r := range new {
		if inKept[r] {
			if k >= len(kept) || kept[k] != r {
				return nil, false // reordered
			}
			k++
			continue
		}
		// The chain now holds new[:i] at positions 1..i: insert right after them.
		lines = append(lines, fmt.Sprintf("-I %s %d %s", chain, i+1, r))
	}
	if len(lines)*4 > len(new) {
		return nil, false
	}
	return lines, true
}

func hasDuplicates(rules []string) bool {
	seen := make(map[string]bool, len(rules))
	for _, r := range rules {
		if seen[r] {
			return true
		}
		seen[r] = true
	}
	return false
}

// hookFix returns restore lines that leave exactly one jump from each built-in chain
// into lanes' top chain, at the top of the built-in chain.
func hookFix(id TableID, st savedTable) []string {
	var out []string
	for _, h := range hooks[id.Table] {
		var found []string
		for _, r := range st.rules[h.Chain] {
			if strings.HasSuffix(r, "-j "+h.Target) {
				found = append(found, r)
			}
		}
		if len(found) == 1 {
			continue
		}
		for _, r := range found {
			out = append(out, fmt.Sprintf("-D %s %s", h.Chain, r))
		}
		out = append(out, fmt.Sprintf("-I %s 1 %s", h.Chain, h.Rule()))
	}
	return out
}

func (f *Firewall) writeSets(ctx context.Context, rs *Ruleset, stats *ApplyStats) error {
	var b strings.Builder
	var written []string
	edits := map[string]setEdit{}
	for _, n := range sortedKeys(rs.Sets) {
		s := rs.Sets[n]
		old, exists := f.sets[n]
		if exists && old != nil && slices.Equal(old, s.Members) {
			continue
		}
		if found, ok := f.foundSets[n]; exists && old == nil && ok && slices.Equal(found, s.Members) {
			f.sets[n] = s.Members
			continue
		}
		if exists && old != nil {
			if e, ok := setEdits(old, s.Members); ok {
				edits[n] = e
				continue
			}
		}
		if exists {
			// Build the new content aside and swap it in: the set is never seen empty.
			tmp := n + "-n"
			writeSet(&b, s, tmp)
			fmt.Fprintf(&b, "swap %s %s\ndestroy %s\n", tmp, n, tmp)
		} else {
			writeSet(&b, s, n)
		}
		written = append(written, n)
	}
	f.foundSets = nil
	// A set whose edits fail is rebuilt and swapped in with the others.
	for _, n := range f.editSets(edits) {
		writeSet(&b, rs.Sets[n], n+"-n")
		fmt.Fprintf(&b, "swap %s-n %s\ndestroy %s-n\n", n, n, n)
		written = append(written, n)
	}
	for n := range edits {
		if !slices.Contains(written, n) {
			f.sets[n] = rs.Sets[n].Members
			stats.SetsWritten++
		}
	}
	if len(written) == 0 {
		return nil
	}
	if err := f.bulk(ctx, "ipset", []byte(b.String()), f.bins["ipset"], "restore"); err != nil {
		// A failed restore may have done part of its lines: content unknown now.
		for _, n := range written {
			f.sets[n] = nil
		}
		return errors.Join(fmt.Errorf("write ipsets: %w", err), f.refreshSets(ctx))
	}
	for _, n := range written {
		f.sets[n] = rs.Sets[n].Members
	}
	stats.SetsWritten += len(written)
	return nil
}

// setEdit is the members a set loses and gains.
type setEdit struct{ del, add []string }

// setEdits returns what turns a set holding old into one holding new (both sorted)
// member by member, when few change: a member joining or leaving a group of a
// thousand is one kernel call, not a thousand adds and a swap.
func setEdits(old, new []string) (setEdit, bool) {
	var e setEdit
	i, j := 0, 0
	for i < len(old) || j < len(new) {
		switch {
		case j == len(new) || (i < len(old) && old[i] < new[j]):
			e.del = append(e.del, old[i])
			i++
		case i == len(old) || new[j] < old[i]:
			e.add = append(e.add, new[j])
			j++
		default:
			i++
			j++
		}
	}
	if n := len(e.del) + len(e.add); n > 8 && n*4 > len(new) {
		return setEdit{}, false
	}
	return e, true
}

// editSets applies the edits over netlink, no process, and returns the sets whose
// edits failed (their content is unknown: the caller rewrites them). Each edit is
// atomic in the kernel; the members that leave go first, so a set never holds more
// than its old and new members together.
func (f *Firewall) editSets(edits map[string]setEdit) (failed []string) {
	if len(edits) == 0 {
		return nil
	}
	start := time.Now()
	var errs []error
	err := f.host.Do(func() error {
		for _, n := range sortedKeys(edits) {
			e := edits[n]
			if err := editSet(n, e); err != nil {
				errs = append(errs, err)
				failed = append(failed, n)
			}
		}
		return nil
	})
	if err != nil {
		failed = sortedKeys(edits)
		errs = append(errs, err)
	}
	err = errors.Join(errs...)
	f.observe("ipset", time.Since(start), err)
	if err != nil {
		f.log.Warn("ipset edits failed; rewriting those sets", "sets", failed, "err", err)
	}
	return failed
}

func editSet(name string, e setEdit) error {
	for _, op := range []struct {
		members []string
		do      func(string, *netlink.IPSetEntry) error
	}{{e.del, netlink.IpsetDel}, {e.add, netlink.IpsetAdd}} {
		for _, m := range op.members {
			p, err := parsePrefix(m)
			if err != nil {
				return fmt.Errorf("ipset %s member %q: %w", name, m, err)
			}
			// Replace: no error for a member already there or already gone.
			entry := &netlink.IPSetEntry{IP: p.Addr().AsSlice(), CIDR: uint8(p.Bits()), Replace: true}
			if err := op.do(name, entry); err != nil {
				return fmt.Errorf("ipset %s member %s: %w", name, m, err)
			}
		}
	}
	return nil
}

func (f *Firewall) deleteSets(ctx context.Context, rs *Ruleset, stats *ApplyStats) error {
	var gone []string
	for _, n := range sortedKeys(f.sets) {
		if _, ok := rs.Sets[n]; !ok {
			gone = append(gone, n)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	var b strings.Builder
	for _, n := range gone {
		fmt.Fprintf(&b, "destroy %s\n", n)
	}
	if err := f.bulk(ctx, "ipset", []byte(b.String()), f.bins["ipset"], "restore"); err != nil {
		return errors.Join(fmt.Errorf("destroy unused ipsets: %w", err), f.refreshSets(ctx))
	}
	for _, n := range gone {
		delete(f.sets, n)
	}
	stats.SetsDeleted += len(gone)
	return nil
}

// RemoveAll deletes every lanes chain, hook and ipset of the host (uninstall, tests).
func (f *Firewall) RemoveAll(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range Tables {
		st, err := f.save(ctx, id)
		if err != nil {
			return err
		}
		var lanes []string
		for _, c := range st.chains {
			if strings.HasPrefix(c, ChainPrefix) {
				lanes = append(lanes, c)
			}
		}
		var b bytes.Buffer
		fmt.Fprintf(&b, "*%s\n", id.Table)
		for _, c := range lanes {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
		for _, h := range hooks[id.Table] {
			for _, r := range st.rules[h.Chain] {
				if strings.HasSuffix(r, "-j "+h.Target) {
					fmt.Fprintf(&b, "-D %s %s\n", h.Chain, r)
				}
			}
		}
		for _, c := range lanes {
			fmt.Fprintf(&b, "-X %s\n", c)
		}
		b.WriteString("COMMIT\n")
		if _, err := f.host.Exec(ctx, b.Bytes(), f.restoreBin(id.Family), "-w", xtablesWait, "--noflush"); err != nil {
			return fmt.Errorf("remove lanes chains from %s: %w", id, err)
		}
		f.applied[id] = map[string][]string{}
		f.hooked[id] = false
	}
	if err := f.refreshSets(ctx); err != nil {
		return err
	}
	var b strings.Builder
	for _, n := range sortedKeys(f.sets) {
		fmt.Fprintf(&b, "destroy %s\n", n)
	}
	if b.Len() > 0 {
		if _, err := f.host.Exec(ctx, []byte(b.String()), f.bins["ipset"], "restore"); err != nil {
			return fmt.Errorf("destroy lanes ipsets: %w", err)
		}
	}
	f.sets = map[string][]string{}
	f.zones = map[string]int{}
	return nil
}

// refreshSets re-reads which lanes ipsets exist, keeping known contents of those that
// are still there.
func (f *Firewall) refreshSets(ctx context.Context) error {
	out, err := f.host.Exec(ctx, nil, f.bins["ipset"], "list", "-n")
	if err != nil {
		return fmt.Errorf("list ipsets: %w", err)
	}
	now := map[string][]string{}
	for _, n := range strings.Fields(string(out)) {
		if strings.HasPrefix(n, SetPrefix4) || strings.HasPrefix(n, SetPrefix6) {
			now[n] = f.sets[n]
		}
	}
	f.sets = now
	return nil
}
