package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// raft's leader starts this with a bare `go` and stops it through a
		// channel closed on step-down; it may outlive Shutdown by a moment.
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.emitLogStoreMetrics"),
	)
}

const want = `store open
put quickstart/greeting = hello at revision 2
  watch: rev 2 PUT quickstart/greeting "hello"
put quickstart/color = blue at revision 3
  watch: rev 3 PUT quickstart/color "blue"
txn: color was blue, set to green at revision 4
  watch: rev 4 PUT quickstart/color "green"
txn: color is no longer blue (it is green); red not written
put quickstart/session with a lease at revision 5
  watch: rev 5 PUT quickstart/session "active"
lease revoked: its keys are deleted with it
  watch: rev 6 DELETE quickstart/session ""
read back at revision 6: 2 keys
  quickstart/color = green (version 2, modified at 4)
  quickstart/greeting = hello (version 1, modified at 2)
`

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), &out, t.TempDir()); err != nil {
		t.Fatalf("run: %v\noutput so far:\n%s", err, out.String())
	}
	if got := out.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
}

// A second run on the same directory continues from the first run's data:
// revisions and versions carry on from where it stopped.
func TestRunTwiceSameDir(t *testing.T) {
	dir := t.TempDir()
	if err := run(t.Context(), new(bytes.Buffer), dir); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(t.Context(), &out, dir); err != nil {
		t.Fatalf("second run: %v\noutput so far:\n%s", err, out.String())
	}
	for _, line := range []string{
		"put quickstart/greeting = hello at revision 7\n",
		"txn: color was blue, set to green at revision 9\n",
		"read back at revision 11: 2 keys\n",
		"  quickstart/color = green (version 4, modified at 9)\n",
		"  quickstart/greeting = hello (version 2, modified at 7)\n",
	} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("second run's output lacks %q:\n%s", line, out.String())
		}
	}
}

// Without -dir the program works in a temporary directory and removes it.
func TestRealMainTempDir(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := realMain(nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr.String())
	}
	first, rest, _ := strings.Cut(stdout.String(), "\n")
	dir, ok := strings.CutPrefix(first, "data directory: ")
	if !ok || dir == "" {
		t.Fatalf("first line %q does not name the data directory", first)
	}
	if rest != want {
		t.Errorf("output:\n%s\nwant:\n%s", rest, want)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("temporary directory %s not removed: %v", dir, err)
	}
}

func TestRealMainBadFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"-nosuchflag"}, &stdout, &stderr); code != 2 {
		t.Errorf("exit code %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), "nosuchflag") {
		t.Errorf("stderr does not name the bad flag:\n%s", stderr.String())
	}
}
