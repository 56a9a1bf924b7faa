// Command etcd is etcd's own server, built from the etcd module lanes' client links
// (same version, same flags as a packaged etcd of that release), so the multi-member
// lab runs the real thing without a download.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
