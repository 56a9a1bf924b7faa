package hostwire

import (
	"context"
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// WatchPorts reports, by device ID (see DeviceID), ports whose kernel devices changed
// behind lanesd's back: a tap, qbr, qvb or qvo deleted, or a tap or qvb that left its
// qbr. lanesd's own changes are reported too (it cannot tell them apart); re-ensuring a
// complete port costs no change, so they only cost a cheap pass. The channel closes
// when ctx ends or the subscription fails.
func (h *Host) WatchPorts(ctx context.Context) (<-chan string, error) {
	updates := make(chan netlink.LinkUpdate, 256)
	done := make(chan struct{})
	// The netlink socket belongs to the namespace it is made in: the host's.
	err := h.Do(func() error {
		return netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
			ReceiveBufferSize: 1 << 20,
			ErrorCallback:     func(error) {},
		})
	})
	if err != nil {
		close(done)
		return nil, fmt.Errorf("subscribe to link changes: %w", err)
	}
	out := make(chan string, 64)
	go func() {
		defer close(out)
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-updates:
				if !ok {
					return
				}
				id, changed := portChange(u)
				if !changed {
					continue
				}
				select {
				case out <- id:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// portChange says whether a link update is a port device going away or leaving its
// bridge, and whose.
func portChange(u netlink.LinkUpdate) (string, bool) {
	if u.Link == nil {
		return "", false
	}
	name := u.Link.Attrs().Name
	if len(name) < 4 {
		return "", false
	}
	prefix, id := name[:3], name[3:]
	switch prefix {
	case "tap", "qbr", "qvb", "qvo":
	default:
		return "", false
	}
	if u.Header.Type == unix.RTM_DELLINK {
		return id, true
	}
	// A tap or qvb must stay enslaved to its qbr.
	if (prefix == "tap" || prefix == "qvb") && u.Link.Attrs().MasterIndex == 0 && !strings.HasPrefix(u.Link.Type(), "bridge") {
		return id, true
	}
	return "", false
}
