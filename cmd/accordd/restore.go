package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/accordkv/accord"
	"github.com/accordkv/accord/etcdapi"
)

// snapshotCommand runs `accordd snapshot restore|status`: etcdutl's
// snapshot commands for accord.
func snapshotCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "restore":
			return snapshotRestore(args[1:], stdout, stderr)
		case "status":
			return snapshotStatus(args[1:], stdout, stderr)
		}
	}
	return fail(stderr, errors.New("usage: accordd snapshot restore FILE --data-dir=DIR [--name=NAME --initial-cluster=NAME=URL --initial-advertise-peer-urls=URL --initial-cluster-token=TOKEN --skip-hash-check] | accordd snapshot status FILE [-w simple|table|json|fields]"))
}

// parseWithFile parses flags and exactly one positional argument, which
// may come before, between or after the flags (cobra's rule, which
// etcdutl users rely on). It returns the file, or an exit code.
func parseWithFile(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (string, int, bool) {
	var files []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprintf(stdout, "Usage: %s FILE [flags]\n", fs.Name())
				fs.SetOutput(stdout)
				fs.PrintDefaults()
				return "", 0, false
			}
			return "", fail(stderr, fmt.Errorf("%s: %v", strings.TrimPrefix(fs.Name(), "accordd "), err)), false
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(files) != 1 {
		return "", fail(stderr, fmt.Errorf("%s requires exactly one argument (the snapshot file), got %d", strings.TrimPrefix(fs.Name(), "accordd "), len(files))), false
	}
	return files[0], 0, true
}

// snapshotRestore runs `accordd snapshot restore FILE [flags]`: etcdutl's
// snapshot restore for accord, with its flags. It turns a snapshot file
// (`etcdctl snapshot save` from an accord member or from etcd 3.5 to 3.7;
// with --skip-hash-check also a kv.db or an etcd member/snap/db) into a
// new data directory of a single-member cluster, whose member has the node
// ID that `accordd --name=NAME --initial-cluster-token=TOKEN` computes, so
// that accordd started on the directory with those flags serves the data.
// Grow the cluster again with `etcdctl member add`.
func snapshotRestore(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("accordd snapshot restore", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	name := fs.String("name", "default", "human-readable name of the restored member")
	dataDir := fs.String("data-dir", "", "path to the new data directory (default \"${name}.accord\"); must not exist or be empty")
	initialCluster := fs.String("initial-cluster", "", "the restored member: name=peerURL (one member; default ${name}=${initial-advertise-peer-urls})")
	advertise := fs.String("initial-advertise-peer-urls", "", "the restored member's peer URL (default: its --initial-cluster entry, else http://127.0.0.1:2380)")
	token := fs.String("initial-cluster-token", "etcd-cluster", "the restored cluster's token (accord's cluster name)")

	skipHash := fs.Bool("skip-hash-check", false, "ignore the snapshot's sha256 trailer (required for a db copied out of a data directory, which has none)")
	walDir := fs.String("wal-dir", "", "not supported: accordd keeps its raft log inside --data-dir")
	fs.Uint64("initial-memory-map-size", 0, "accepted for etcdutl's command lines; accordd sizes its memory map from --quota-backend-bytes")
	bump := fs.Uint64("bump-revision", 0, "how much to increase the latest revision after restore")
	markCompacted := fs.Bool("mark-compacted", false, "mark the latest revision after restore as the point of scheduled compaction (required if --bump-revision > 0, disallowed otherwise)")

	file, code, ok := parseWithFile(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if *walDir != "" {
		return fail(stderr, errors.New("snapshot restore: --wal-dir is not supported: accordd keeps its raft log inside --data-dir (raft-log/)"))
	}
	if (*bump == 0) == *markCompacted {
		return fail(stderr, errors.New("snapshot restore: --mark-compacted required if --bump-revision > 0"))
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

	f, err := os.Open(file)
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
	so := etcdapi.SnapshotOptions{SkipHashCheck: *skipHash, BumpRevision: int64(*bump)}
	if err := etcdapi.RestoreSnapshotWith(f, dir, opts, so); err != nil {
		return fail(stderr, fmt.Errorf("snapshot restore %s: %v", file, err))
	}
	fmt.Fprintf(stdout, "restored snapshot %s into %s: a new single-member cluster %q, member %q (ID %s), peer URL %s\n",
		file, dir, *token, *name, memberIDHex(id), peer)
	fmt.Fprintf(stdout, "start it with: accordd --name=%s --data-dir=%s --initial-cluster-token=%s --initial-advertise-peer-urls=%s --initial-cluster=%s=%s\n",
		*name, dir, *token, peer, *name, peer)
	return 0
}

// snapshotStatus runs `accordd snapshot status FILE [-w FORMAT]`:
// etcdutl's snapshot status, with its output formats (simple, the
// default; table; json; fields) and its numbers (etcdapi.ReadSnapshotStatus).
func snapshotStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("accordd snapshot status", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	format := fs.String("write-out", "simple", "set the output format (fields, json, simple, table)")
	fs.StringVar(format, "w", "simple", "short for --write-out")
	file, code, ok := parseWithFile(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	switch *format {
	case "simple", "table", "json", "fields":
	case "protobuf":
		return fail(stderr, errors.New("snapshot status: protobuf not supported as output format"))
	default:
		return fail(stderr, fmt.Errorf("snapshot status: unsupported output format %q", *format))
	}
	st, err := etcdapi.ReadSnapshotStatus(file)
	if err != nil {
		return fail(stderr, fmt.Errorf("snapshot status: %v", err))
	}
	printSnapshotStatus(stdout, *format, st)
	return 0
}

// printSnapshotStatus prints st as etcdutl 3.7 does in format.
func printSnapshotStatus(w io.Writer, format string, st etcdapi.SnapshotStatus) {
	row := []string{
		fmt.Sprintf("%x", st.Hash),
		fmt.Sprint(st.Revision),
		fmt.Sprint(st.TotalKey),
		siBytes(uint64(st.TotalSize)),
		st.Version,
	}
	switch format {
	case "simple":
		fmt.Fprintln(w, strings.Join(row, ", "))
	case "json":
		b, _ := json.Marshal(st)
		fmt.Fprintln(w, string(b))
	case "fields":
		fmt.Fprintln(w, `"Hash" :`, st.Hash)
		fmt.Fprintln(w, `"Revision" :`, st.Revision)
		fmt.Fprintln(w, `"Keys" :`, st.TotalKey)
		fmt.Fprintln(w, `"Size" :`, st.TotalSize)
		fmt.Fprintln(w, `"Version" :`, st.Version)
	case "table":
		printTable(w, []string{"HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE", "VERSION"}, row)
	}
}

// printTable draws one header and one row in box-drawing characters,
// headers centred and cells right-aligned: etcdutl's tablewriter output.
func printTable(w io.Writer, hdr, row []string) {
	widths := make([]int, len(hdr))
	for i := range hdr {
		widths[i] = max(len(hdr[i]), len(row[i]))
	}
	rule := func(left, mid, right string) {
		var b strings.Builder
		b.WriteString(left)
		for i, n := range widths {
			if i > 0 {
				b.WriteString(mid)
			}
			b.WriteString(strings.Repeat("─", n+2))
		}
		b.WriteString(right)
		fmt.Fprintln(w, b.String())
	}
	line := func(cells []string, centre bool) {
		var b strings.Builder
		b.WriteString("│")
		for i, c := range cells {
			gap := widths[i] - len(c)
			left := gap
			if centre {
				left = gap / 2
			}
			b.WriteString(" " + strings.Repeat(" ", left) + c + strings.Repeat(" ", gap-left) + " │")
		}
		fmt.Fprintln(w, b.String())
	}
	rule("┌", "┬", "┐")
	line(hdr, true)
	rule("├", "┼", "┤")
	line(row, false)
	rule("└", "┴", "┘")
}

// siBytes formats n as go-humanize's Bytes does (etcdutl's TOTAL SIZE):
// powers of 1000, one decimal below 10 ("20 kB", "4.1 MB", "8 B").
func siBytes(n uint64) string {
	if n < 10 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"B", "kB", "MB", "GB", "TB", "PB", "EB"}
	e := math.Floor(math.Log(float64(n)) / math.Log(1000))
	val := math.Floor(float64(n)/math.Pow(1000, e)*10+0.5) / 10
	if val < 10 {
		return fmt.Sprintf("%.1f %s", val, units[int(e)])
	}
	return fmt.Sprintf("%.0f %s", val, units[int(e)])
}
