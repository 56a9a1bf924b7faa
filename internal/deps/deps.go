// Package deps pins the project's libraries until every one has a real importer.
package deps

import (
	_ "antrea.io/libOpenflow/openflow15"
	_ "antrea.io/ofnet/ofctrl"
	_ "github.com/cenkalti/backoff/v4"
	_ "github.com/coreos/go-iptables/iptables"
	_ "github.com/ovn-kubernetes/libovsdb/client"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/vishvananda/netlink"
	_ "github.com/vishvananda/netns"
	_ "go.etcd.io/etcd/client/v3"
	_ "go.etcd.io/etcd/server/v3/embed"
)
