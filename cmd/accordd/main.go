// Command accordd is an etcd-compatible server built on accord: it takes
// etcd's flags and ETCD_* environment variables, serves the etcd v3 API to
// etcdctl and clientv3 on its client URLs, and talks raft with its peers,
// so that an etcd deployment's configuration files, systemd unit and
// runbook work with accordd in place of etcd.
//
//	accordd                                   # one member on 127.0.0.1:2379 (client) and :2380 (peer), data in ./default.accord
//	accordd --name=a --initial-cluster=a=http://10.0.0.1:2380,b=...   # a static cluster, as etcd
//	accordd --join=10.0.0.1:2381 --bootstrap-expect=3   # accord's gossip discovery
//	accordd snapshot restore backup.db --data-dir=/var/lib/accordd --name=a
//	accordd --version
//
// Exit codes: 0 after a clean shutdown (SIGTERM or SIGINT), after
// `--version` and `--help`, and when the cluster removed this member (as
// etcd, so that systemd's Restart=on-failure does not restart a removed
// member); 1 when accordd cannot start (bad configuration, a port in use,
// a data directory of another cluster or node) or fails while running,
// with one line on stderr that says why. See docs/RUNBOOK.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/accordkv/accord"
)

// memberVersion, when set at build time (go build -ldflags
// "-X main.memberVersion=0.3.0"), is the accord version this build
// advertises to its cluster instead of accord.ReleaseVersion. The runbook
// test builds a "newer" accordd with it to rehearse a rolling upgrade.
var memberVersion string

// version is the version this build advertises.
func version() string {
	if memberVersion != "" {
		return memberVersion
	}
	return accord.ReleaseVersion
}

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// run is accordd with its arguments (without the program name), its
// environment and its output streams; it returns the exit code.
func run(args, env []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "snapshot" {
		return snapshotCommand(args[1:], stdout, stderr)
	}
	c, warnings, err := parseConfig(args, env)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stdout)
		return 0
	}
	if err != nil {
		return fail(stderr, err)
	}
	if c.version {
		printVersion(stdout)
		return 0
	}
	s, err := c.validate()
	if err != nil {
		return fail(stderr, err)
	}
	return serve(s, warnings, stderr)
}

// fail writes err to w as one line, "accordd: ...", and returns exit code 1.
func fail(w io.Writer, err error) int {
	fmt.Fprintln(w, "accordd: "+oneLine(err.Error()))
	return 1
}

// oneLine joins the lines of a message (errors.Join separates errors with
// newlines) with "; ".
func oneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// printVersion prints the version as etcd --version does.
func printVersion(w io.Writer) {
	fmt.Fprintf(w, "accordd Version: %s\n", version())
	fmt.Fprintf(w, "Git SHA: %s\n", gitSHA())
	fmt.Fprintf(w, "Go Version: %s\n", runtime.Version())
	fmt.Fprintf(w, "Go OS/Arch: %s/%s\n", runtime.GOOS, runtime.GOARCH)
}

// gitSHA is the short VCS revision the binary was built from, with
// "-dirty" for a modified tree, or "Not provided" (go build -buildvcs=false,
// or a build outside a repository).
func gitSHA() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "Not provided"
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "Not provided"
	}
	rev = rev[:min(7, len(rev))]
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// printUsage prints every flag with its default and environment variable.
func printUsage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  accordd [flags]
  accordd snapshot restore FILE [--data-dir=DIR --name=NAME --initial-cluster-token=TOKEN ...]
  accordd --version

Every flag can also be given as an environment variable (shown in
brackets); a flag given on the command line wins. Flags marked "ignored"
are accepted so that an etcd configuration starts unchanged.

Flags:
`)
	var c config
	fs := newFlagSet(&c)
	fs.VisitAll(func(f *flag.Flag) {
		def := ""
		if f.DefValue != "" {
			def = " '" + f.DefValue + "'"
		}
		env := ""
		if f.Name != "version" {
			env = " [" + envName(f.Name) + "]"
		}
		fmt.Fprintf(w, "  --%s%s%s\n      %s\n", f.Name, def, env, f.Usage)
	})
}
