package flows

import (
	"fmt"
	"hash/fnv"
)

// Cookie tags every flow with who owns it:
//
//	bits 63..48 round     (the controller's generation; flows/ builds round 0)
//	bits 47..40 category  (what kind of owner)
//	bits 39..0  owner id  (first 40 bits of FNV-1a 64 of the owner key)
//
// A delete by cookie mask can then remove one owner's flows, one category, or every
// flow of an older round.
type Cookie uint64

// Masks of the cookie's parts, for delete-by-cookie-mask.
const (
	RoundMask    Cookie = 0xffff << 48
	CategoryMask Cookie = 0xff << 40
	OwnerMask    Cookie = 1<<40 - 1
)

// Category is the kind of owner of a flow.
type Category uint8

// Categories; the numbers are part of the cookie, never renumber them.
const (
	CatSetup      Category = 1 // bridge defaults
	CatNetwork    Category = 2 // a network's local VLAN and flood flows
	CatTunnel     Category = 3 // a tunnel port's ingress flow
	CatLocalPort  Category = 4 // a local VM port's anti-spoofing
	CatRemotePort Category = 5 // a remote port's l2pop unicast and ARP responder
	CatLearned    Category = 6 // table-20 flows created by the learn() action
)

func (c Category) String() string {
	switch c {
	case CatSetup:
		return "setup"
	case CatNetwork:
		return "network"
	case CatTunnel:
		return "tunnel"
	case CatLocalPort:
		return "local-port"
	case CatRemotePort:
		return "remote-port"
	case CatLearned:
		return "learned"
	}
	return fmt.Sprintf("category-%d", uint8(c))
}

// OwnerID is the 40-bit owner part of a cookie for an owner key.
func OwnerID(key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	return h.Sum64() >> 24
}

// MakeCookie builds a cookie from its parts.
func MakeCookie(round uint16, cat Category, ownerKey string) Cookie {
	return Cookie(round)<<48 | Cookie(cat)<<40 | Cookie(OwnerID(ownerKey))
}

// Round is the cookie's generation.
func (c Cookie) Round() uint16 { return uint16(c >> 48) }

// Category is the kind of owner.
func (c Cookie) Category() Category { return Category(c >> 40) }

// Owner is the 40-bit owner id.
func (c Cookie) Owner() uint64 { return uint64(c & OwnerMask) }

// WithRound replaces the round.
func (c Cookie) WithRound(r uint16) Cookie { return c&^RoundMask | Cookie(r)<<48 }

func (c Cookie) String() string {
	return fmt.Sprintf("round=%d,%s,owner=%#010x", c.Round(), c.Category(), c.Owner())
}

// Owner identifies a group of flows that change together, so a controller can diff
// and replace them as a unit.
type Owner struct {
	Category Category
	Key      string // network ID, tunnel remote IP, port ID; "" for bridge setup
}

// Cookie is the owner's cookie in round 0.
func (o Owner) Cookie() Cookie { return MakeCookie(0, o.Category, o.Key) }

func (o Owner) String() string {
	if o.Key == "" {
		return o.Category.String()
	}
	return o.Category.String() + "/" + o.Key
}

// LearnedCookie is given to learn() for the table-20 entries it creates; they belong
// to no owner, so they carry the setup key.
var LearnedCookie = MakeCookie(0, CatLearned, "")
