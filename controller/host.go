package controller

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strconv"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/hostwire"
	"github.com/lanes-net/lanes/ovsdb"
)

// hostStep ensures what the host needs whatever the store says: the sysctls the
// firewall relies on, br-int, br-tun and their patch pair, and for the netdev datapath
// the underlay bridge. It runs at start and on every full pass (sysctls get reset,
// bridges get touched by hand); each part is a no-op when in place.
type hostStep struct {
	cfg  Config
	db   *ovsdb.Client
	host *hostwire.Host
	// patchInt is patch-int's ofport on br-tun as of the last full pass.
	patchInt int
}

// Sync ensures the bridges on every pass (planned from the OVSDB cache: nothing is
// sent when they are in place, and a bridge or patch port deleted by hand comes back
// with the next pass), sysctls and the underlay on a full pass, and returns
// patch-int's ofport.
func (s *hostStep) Sync(ctx context.Context, full bool) (int, error) {
	ip, _ := s.cfg.TunnelAddr()
	if full || s.patchInt == 0 {
		if err := s.host.EnsureSysctls(); err != nil {
			return s.patchInt, fmt.Errorf("host sysctls: %w", err)
		}
	}
	if s.cfg.DatapathType == "netdev" && (full || s.patchInt == 0) {
		// OVSDB makes br-phy and takes the NIC; the kernel side (NIC up, ARP off, the
		// tunnel IP on br-phy's internal interface) is hostwire's.
		if err := s.db.EnsureUnderlay(ctx, ovsdb.UnderlaySpec{Bridge: api.BrPhy, NIC: s.cfg.UnderlayNIC, DatapathID: datapathID(3, ip)}); err != nil {
			return s.patchInt, fmt.Errorf("underlay: %w", err)
		}
		if err := s.host.EnsureUnderlay(ctx, hostwire.UnderlaySpec{NIC: s.cfg.UnderlayNIC, Bridge: api.BrPhy, CIDR: s.cfg.TunnelIP}); err != nil {
			return s.patchInt, fmt.Errorf("underlay: %w", err)
		}
	}
	ids := map[string]string{"lanes-host": s.cfg.Host}
	res, err := s.db.NewBatch().
		EnsureBridge(ovsdb.BridgeSpec{Name: api.BrInt, DatapathType: s.cfg.DatapathType, DatapathID: datapathID(1, ip), ExternalIDs: ids}).
		EnsureBridge(ovsdb.BridgeSpec{Name: api.BrTun, DatapathType: s.cfg.DatapathType, DatapathID: datapathID(2, ip), ExternalIDs: ids}).
		EnsurePatchPair(api.BrInt, api.BrTun, api.PatchTun, api.PatchInt).
		Commit(ctx)
	if err != nil {
		return s.patchInt, fmt.Errorf("bridges: %w", err)
	}
	n := res.Ofports[api.PatchInt]
	if n <= 0 {
		return s.patchInt, fmt.Errorf("bridges: %s has no ofport (%d)", api.PatchInt, n)
	}
	s.patchInt = n
	return n, nil
}

// datapathID gives each bridge of a host a fixed, distinct datapath-id derived from the
// host's tunnel IP, so the OpenFlow connection never resets when ports change the
// bridge's MAC, and two hosts never share one. An IPv4 address fills the low 32 bits
// as it stands (readable); an IPv6 one is hashed into them (FNV-1a), since any part
// of it may be what tells two hosts apart (::1 in two racks, two hosts of one /64).
func datapathID(bridge int, ip netip.Addr) string {
	var low uint32
	if ip.Is4() {
		low = binary.BigEndian.Uint32(ip.AsSlice())
	} else {
		h := fnv.New32a()
		b := ip.As16()
		h.Write(b[:])
		low = h.Sum32()
	}
	return fmt.Sprintf("%08x%08x", bridge, low)
}

// roundKey is the Bridge external_ids key holding the controller's flow round.
const roundKey = "lanes-round"

// nextRound reads the previous controller's round from br-tun and stores the next one,
// which stamps every flow this process installs. Round 0 is skipped: flows/ builds
// with round 0, so it would not tell a controller's flows from unstamped ones.
func nextRound(ctx context.Context, db *ovsdb.Client) (uint16, error) {
	v, _, err := db.BridgeExternalID(ctx, api.BrTun, roundKey)
	if err != nil {
		return 0, fmt.Errorf("read round: %w", err)
	}
	prev, _ := strconv.Atoi(v)
	round := uint16(prev + 1)
	if round == 0 {
		round = 1
	}
	if err := db.SetBridgeExternalID(ctx, api.BrTun, roundKey, strconv.Itoa(int(round))); err != nil {
		return 0, fmt.Errorf("store round: %w", err)
	}
	return round, nil
}
