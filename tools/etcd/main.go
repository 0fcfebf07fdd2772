// Command etcd is a stock etcd v3.7.3 server, built from the Go module
// proxy, for comparison benchmarks against accord.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
