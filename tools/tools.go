//go:build tools

// Package tools pins the binaries accord is checked, tested and benchmarked
// with: staticcheck v0.8.2 (.ci/run), etcdctl v3.7.3 (the etcdapi tests build it), etcd v3.7.3
// (./etcd, for side-by-side comparisons) and etcdutl v3.7.3 (cmd/accordd's
// snapshot tests build it and etcd). Build them from this module:
//
//	go build -o etcdctl go.etcd.io/etcd/etcdctl/v3
//	go build -o etcdutl go.etcd.io/etcd/etcdutl/v3
//	go build -o etcd ./etcd
//	go build -o staticcheck honnef.co/go/tools/cmd/staticcheck
//
// Run them with GOWORK=off: this module is not in the root go.work.
//
// `go install go.etcd.io/etcd/etcdctl/v3@v3.7.3` is refused because
// etcdctl's go.mod has replace directives; requiring it from a module of
// our own works. This is a separate module so that the root module's
// dependencies (and `go test ./...`) do not include etcd's server.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
	_ "go.etcd.io/etcd/server/v3/etcdmain"
	_ "honnef.co/go/tools/cmd/staticcheck"
)
