package ovsdb

import (
	"context"
	"fmt"
	"github.com/lanes-net/lanes/api"
)

// UnderlaySpec describes the OVSDB side of a host's underlay with the userspace
// (netdev) datapath: userspace tunnels leave through an OVS bridge holding the NIC.
// The kernel side (the NIC's flags, the tunnel IP on the bridge's internal interface)
// is hostwire.Host.EnsureUnderlay's.
type UnderlaySpec struct {
	// Bridge defaults to br-phy.
	Bridge string
	// NIC is the underlay device; it becomes a port of Bridge.
	NIC string
	// DatapathID optionally fixes the bridge's datapath-id.
	DatapathID string
}

// EnsureUnderlay sets up the underlay bridge in one OVSDB transaction:
//   - Bridge: netdev datapath, fail_mode=standalone. Standalone makes OVS install
//     and keep a priority-0 NORMAL flow by itself, so no controller is needed;
//     secure with no flows breaks the tunnels.
//   - the NIC as a port of Bridge.
//
// It returns once vswitchd has numbered the NIC's port and the bridge's internal
// port (so the internal interface exists, or is about to), or with ErrPortFailed
// when vswitchd could not open the NIC (no such device, for one). It is idempotent:
// once in place it sends no transaction.
func (c *Client) EnsureUnderlay(ctx context.Context, spec UnderlaySpec) error {
	if spec.Bridge == "" {
		spec.Bridge = api.BrPhy
	}
	if spec.NIC == "" {
		return fmt.Errorf("underlay: empty NIC")
	}
	b := c.NewBatch().
		EnsureBridge(BridgeSpec{Name: spec.Bridge, DatapathType: DatapathNetdev, DatapathID: spec.DatapathID, FailMode: FailStandalone})
	b.add(spec.NIC, func(p *planner) error {
		return p.ensurePort(&portSpec{bridge: spec.Bridge, name: spec.NIC, ifType: "", readback: true})
	})
	b.add("", func(p *planner) error {
		// The bridge's internal port: its ofport means vswitchd has created the tap.
		p.readback = append(p.readback, spec.Bridge)
		return nil
	})
	if _, err := b.Commit(ctx); err != nil {
		return fmt.Errorf("underlay %s: %w", spec.Bridge, err)
	}
	return nil
}
