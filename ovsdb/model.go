// Package ovsdb manages lanes' Open vSwitch configuration through OVSDB: bridges,
// patch, tunnel and VM ports, the br-phy underlay, ofports and external_ids.
//
// Every logical change is one OVSDB transaction, planned against the client's cache
// (one monitor over the four tables below, on a connection of its own, see
// monitor.go); a change that is already in place sends no transaction at all.
// Transactions are built and sent with libovsdb, which also checks the model below
// against the server's schema when connecting. After a write the client waits until its cache shows the
// change, so the next call plans against what it just wrote, and it reads ofports
// back from the server with a wait+select transaction instead of trusting the cache.
package ovsdb

import (
	"github.com/ovn-kubernetes/libovsdb/model"
)

// Table names of the Open_vSwitch schema.
const (
	tableOpenvSwitch = "Open_vSwitch"
	tableBridge      = "Bridge"
	tablePort        = "Port"
	tableInterface   = "Interface"
)

// The model is hand-written and partial, like Antrea's: the client model must be a
// subset of the server's schema or Connect fails, so only the columns lanes uses are
// listed, with Go types that match the schema exactly (optional scalars are pointers,
// sets are slices, maps are maps).

type openvSwitch struct {
	UUID    string   `ovsdb:"_uuid"`
	Bridges []string `ovsdb:"bridges"`
}

type bridge struct {
	UUID         string            `ovsdb:"_uuid"`
	Name         string            `ovsdb:"name"`
	DatapathType string            `ovsdb:"datapath_type"`
	DatapathID   *string           `ovsdb:"datapath_id"`
	FailMode     *string           `ovsdb:"fail_mode"`
	Protocols    []string          `ovsdb:"protocols"`
	Ports        []string          `ovsdb:"ports"`
	OtherConfig  map[string]string `ovsdb:"other_config"`
	ExternalIDs  map[string]string `ovsdb:"external_ids"`
}

type port struct {
	UUID        string            `ovsdb:"_uuid"`
	Name        string            `ovsdb:"name"`
	Interfaces  []string          `ovsdb:"interfaces"`
	Tag         *int              `ovsdb:"tag"`
	OtherConfig map[string]string `ovsdb:"other_config"`
	ExternalIDs map[string]string `ovsdb:"external_ids"`
}

type iface struct {
	UUID          string            `ovsdb:"_uuid"`
	Name          string            `ovsdb:"name"`
	Type          string            `ovsdb:"type"`
	Options       map[string]string `ovsdb:"options"`
	Ofport        *int              `ovsdb:"ofport"`
	OfportRequest *int              `ovsdb:"ofport_request"`
	Error         *string           `ovsdb:"error"`
	ExternalIDs   map[string]string `ovsdb:"external_ids"`
}

func clientModel() (model.ClientDBModel, error) {
	return model.NewClientDBModel("Open_vSwitch", map[string]model.Model{
		tableOpenvSwitch: &openvSwitch{},
		tableBridge:      &bridge{},
		tablePort:        &port{},
		tableInterface:   &iface{},
	})
}
