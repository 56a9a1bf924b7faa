package ofsync

import (
	"fmt"
	"maps"
	"sort"
	"sync"
	"sync/atomic"

	"antrea.io/libOpenflow/openflow15"
	"antrea.io/libOpenflow/util"
	"antrea.io/ofnet/ofctrl"

	"github.com/lanes-net/lanes/flows"
)

// PacketIn is a packet the switch sent to lanesd: the ofport it came in on, the
// table and cookie of the flow that sent it, and the Ethernet frame.
type PacketIn struct {
	InPort uint32
	Table  uint8
	Cookie flows.Cookie
	Frame  []byte
}

// PacketHandler receives packet-ins. It runs on the switch's receive goroutine, which
// also carries bundle replies and echoes: it must not block.
type PacketHandler func(PacketIn)

// Meter is an OpenFlow meter of a bridge: packets per second, a burst of Burst packets,
// excess dropped.
type Meter struct {
	ID    uint32
	Rate  uint32
	Burst uint32
}

// punt is the packet-in and packet-out side of a bridge, and its meters.
type punt struct {
	handler atomic.Pointer[PacketHandler]
	in      atomic.Uint64 // packet-ins received
	bad     atomic.Uint64 // packet-ins without a frame or an in_port

	mu        sync.Mutex
	meters    map[uint32]Meter // desired; nil until SetMeters
	installed map[uint32]Meter
}

// HandlePackets makes h receive the bridge's packet-ins (nil: drop them).
func (b *Bridge) HandlePackets(h PacketHandler) {
	if h == nil {
		b.punt.handler.Store(nil)
		return
	}
	b.punt.handler.Store(&h)
}

// PacketCounts are the packet-ins received, and those dropped as unreadable.
func (b *Bridge) PacketCounts() (received, unreadable uint64) {
	return b.punt.in.Load(), b.punt.bad.Load()
}

func (b *Bridge) packetIn(p *ofctrl.PacketIn) {
	b.punt.in.Add(1)
	h := b.punt.handler.Load()
	if h == nil || p == nil || p.PacketIn == nil || p.Data == nil {
		b.punt.bad.Add(1)
		return
	}
	in := PacketIn{Table: p.TableId, Cookie: flows.Cookie(p.Cookie)}
	for _, f := range p.Match.Fields {
		if f.Class == openflow15.OXM_CLASS_OPENFLOW_BASIC && f.Field == openflow15.OXM_FIELD_IN_PORT {
			if v, ok := f.Value.(*openflow15.InPortField); ok {
				in.InPort = v.InPort
			}
		}
	}
	// libOpenflow has parsed the frame; marshalling it gives the bytes back.
	frame, err := p.Data.MarshalBinary()
	if err != nil || in.InPort == 0 {
		b.punt.bad.Add(1)
		return
	}
	in.Frame = frame
	(*h)(in)
}

// PacketOut sends an Ethernet frame out of ofport, as if from the controller (it
// goes through no table). It returns ErrNotConnected without a connection.
func (b *Bridge) PacketOut(ofport uint32, frame []byte) error {
	b.mu.Lock()
	sw := b.sw
	b.mu.Unlock()
	if sw == nil || !sw.IsReady() {
		return ErrNotConnected
	}
	po := openflow15.NewPacketOut()
	po.Match.AddField(*openflow15.NewInPortField(openflow15.P_CONTROLLER))
	po.AddAction(openflow15.NewActionOutput(ofport))
	po.Data = util.NewBuffer(frame)
	if err := sw.Send(po); err != nil {
		return fmt.Errorf("%s: packet-out to ofport %d: %w", b.Name, ofport, err)
	}
	return nil
}

// SetMeters makes the bridge hold exactly these meters (of the ones it manages) and
// sends what changed. Meters are not part of bundles (OVS refuses them there); a flow
// naming a missing meter is accepted and runs unmetered, so meters and flows need no
// ordering. A new connection re-creates them all (see pushMeters).
func (b *Bridge) SetMeters(ms []Meter) error {
	want := make(map[uint32]Meter, len(ms))
	for _, m := range ms {
		if m.ID == 0 || m.ID > openflow15.M_MAX || m.Rate == 0 {
			return fmt.Errorf("%s: meter %d: want an ID 1..%d and a rate", b.Name, m.ID, uint32(openflow15.M_MAX))
		}
		want[m.ID] = m
	}
	b.mu.Lock()
	sw := b.sw
	b.mu.Unlock()
	b.punt.mu.Lock()
	defer b.punt.mu.Unlock()
	b.punt.meters = want
	return b.pushMetersLocked(sw, false)
}

// Meters lists the meters last given to SetMeters, by ID.
func (b *Bridge) Meters() []Meter {
	b.punt.mu.Lock()
	defer b.punt.mu.Unlock()
	out := make([]Meter, 0, len(b.punt.meters))
	for _, m := range b.punt.meters {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// pushMeters sends the desired meters to a newly connected switch: each is deleted
// and added again, since a switch that kept its meters over a lanesd restart would
// refuse an add, and one that restarted has none to modify.
func (b *Bridge) pushMeters(sw *ofctrl.OFSwitch) error {
	b.punt.mu.Lock()
	defer b.punt.mu.Unlock()
	return b.pushMetersLocked(sw, true)
}

func (b *Bridge) pushMetersLocked(sw *ofctrl.OFSwitch, full bool) error {
	if b.punt.meters == nil {
		return nil
	}
	if sw == nil || !sw.IsReady() {
		return ErrNotConnected
	}
	have := b.punt.installed
	if full {
		have = nil
	}
	var mods []*openflow15.MeterMod
	for id, m := range b.punt.meters {
		old, ok := have[id]
		switch {
		case full:
			mods = append(mods, meterMod(openflow15.MC_DELETE, Meter{ID: id}), meterMod(openflow15.MC_ADD, m))
		case !ok:
			mods = append(mods, meterMod(openflow15.MC_ADD, m))
		case old != m:
			mods = append(mods, meterMod(openflow15.MC_MODIFY, m))
		}
	}
	for id := range have {
		if _, ok := b.punt.meters[id]; !ok {
			mods = append(mods, meterMod(openflow15.MC_DELETE, Meter{ID: id}))
		}
	}
	for _, mm := range mods {
		if err := sw.Send(mm); err != nil {
			return fmt.Errorf("%s: meter %d: %w", b.Name, mm.MeterId, err)
		}
	}
	b.punt.installed = maps.Clone(b.punt.meters)
	return nil
}

func meterMod(cmd uint16, m Meter) *openflow15.MeterMod {
	mm := openflow15.NewMeterMod()
	mm.Command, mm.MeterId = cmd, m.ID
	if cmd == openflow15.MC_DELETE {
		return mm
	}
	mm.Flags = openflow15.MF_PKTPS | openflow15.MF_BURST | openflow15.MF_STATS
	band := openflow15.NewMeterBandDrop()
	band.Rate, band.BurstSize = m.Rate, m.Burst
	mm.AddMeterBand(band)
	return mm
}
