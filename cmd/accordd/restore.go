package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/accordkv/accord"
	"github.com/accordkv/accord/etcdapi"
)

// snapshotCommand runs `accordd snapshot restore FILE [flags]`: etcdutl's
// snapshot restore for accord. It turns a file written by `etcdctl
// snapshot save` (from an accord member) into a new data directory of a
// single-member cluster, whose member has the node ID that `accordd
// --name=NAME --initial-cluster-token=TOKEN` computes, so that accordd
// started on the directory with those flags serves the data. Grow the
// cluster again with `etcdctl member add`.
func snapshotCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "restore" {
		return fail(stderr, errors.New("usage: accordd snapshot restore FILE --data-dir=DIR [--name=NAME --initial-cluster=NAME=URL --initial-advertise-peer-urls=URL --initial-cluster-token=TOKEN]"))
	}
	fs := flag.NewFlagSet("accordd snapshot restore", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	name := fs.String("name", "default", "human-readable name of the restored member")
	dataDir := fs.String("data-dir", "", "path to the new data directory (default \"${name}.accord\"); must not exist or be empty")
	initialCluster := fs.String("initial-cluster", "", "the restored member: name=peerURL (one member; default ${name}=${initial-advertise-peer-urls})")
	advertise := fs.String("initial-advertise-peer-urls", "", "the restored member's peer URL (default: its --initial-cluster entry, else http://127.0.0.1:2380)")
	token := fs.String("initial-cluster-token", "etcd-cluster", "the restored cluster's token (accord's cluster name)")

	// The file may come before or after the flags.
	var files []string
	rest := args[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprintln(stdout, "Usage: accordd snapshot restore FILE [flags]")
				fs.SetOutput(stdout)
				fs.PrintDefaults()
				return 0
			}
			return fail(stderr, fmt.Errorf("snapshot restore: %v", err))
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(files) != 1 {
		return fail(stderr, fmt.Errorf("snapshot restore: want one snapshot file, got %d", len(files)))
	}
	if !validToken(*token) {
		return fail(stderr, fmt.Errorf("snapshot restore: --initial-cluster-token %q: use 1-128 characters from [A-Za-z0-9._-]", *token))
	}
	if *name == "" {
		return fail(stderr, errors.New("snapshot restore: --name is empty"))
	}
	peer := "http://127.0.0.1:2380"
	if *advertise != "" {
		u, err := parseURL(*advertise)
		if err != nil {
			return fail(stderr, fmt.Errorf("snapshot restore: --initial-advertise-peer-urls: %v", err))
		}
		peer = u.String()
	}
	if *initialCluster != "" {
		ms, err := parseInitialCluster(*initialCluster)
		if err != nil {
			return fail(stderr, fmt.Errorf("snapshot restore: %v", err))
		}
		if len(ms) != 1 {
			return fail(stderr, fmt.Errorf("snapshot restore: --initial-cluster lists %d members: accordd restores a single-member cluster; start it, then add the others with `etcdctl member add`", len(ms)))
		}
		if ms[0].name != *name {
			return fail(stderr, fmt.Errorf("snapshot restore: --initial-cluster %q has no member named %q (--name)", *initialCluster, *name))
		}
		if *advertise != "" && ms[0].url.String() != peer {
			return fail(stderr, fmt.Errorf("snapshot restore: --initial-cluster gives %s the peer URL %s, but --initial-advertise-peer-urls is %s", *name, ms[0].url, peer))
		}
		peer = ms[0].url.String()
	}
	pu, _ := parseURL(peer)
	dir := *dataDir
	if dir == "" {
		dir = *name + ".accord"
	}

	f, err := os.Open(files[0])
	if err != nil {
		return fail(stderr, fmt.Errorf("snapshot restore: %v", err))
	}
	defer f.Close()
	id := nodeID(*token, *name)
	opts := &accord.Options{
		NodeID:            id,
		NodeName:          *name,
		ClusterName:       *token,
		PeerAddr:          pu.Host,
		AdvertisePeerAddr: pu.Host,
	}
	if err := etcdapi.RestoreSnapshot(f, dir, opts); err != nil {
		return fail(stderr, fmt.Errorf("snapshot restore %s: %v", files[0], err))
	}
	fmt.Fprintf(stdout, "restored snapshot %s into %s: a new single-member cluster %q, member %q (ID %s), peer URL %s\n",
		files[0], dir, *token, *name, memberIDHex(id), peer)
	fmt.Fprintf(stdout, "start it with: accordd --name=%s --data-dir=%s --initial-cluster-token=%s --initial-advertise-peer-urls=%s --initial-cluster=%s=%s\n",
		*name, dir, *token, peer, *name, peer)
	return 0
}
