package fuzzsmoke

import (
	"bytes"
	"context"
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"go.uber.org/goleak"
)

const (
	// fuzzTime is each target's -fuzztime. A target takes fuzzTime and
	// 1-4 s of linking, start-up and baseline: with 9 targets, 56-83 s on
	// a loaded 2-core machine once the builds are cached (see doc.go).
	fuzzTime = 4 * time.Second
	// minimizeTime bounds minimizing a failing input (go's default is a
	// minute), so that the input is written well before targetTimeout.
	minimizeTime = 10 * time.Second
	// buildTimeout bounds building one package for fuzzing: minutes on a
	// cold build cache, since -fuzz instruments every dependency (4m17s
	// for the root package on a 2-core machine with a load of 7).
	buildTimeout = 8 * time.Minute
	// targetTimeout bounds one child go test -fuzz, with the build cached;
	// the child's own -timeout is a little shorter so that it reports
	// first.
	targetTimeout = 90 * time.Second
	childTimeout  = targetTimeout - 10*time.Second
)

// slowFuzzBuild lists the packages whose targets this test leaves out:
// -fuzz instruments every dependency, and for these (raft, serf, bbolt;
// gRPC and etcd) that build takes minutes on the cold build cache of a CI
// machine (4m17s for the root package on a loaded 2-core machine), which
// with the rest would come close to go test's 10-minute limit. Their
// targets still run on their seed corpus, under -race, in every go test;
// fuzz them by hand: go test -run '^$' -fuzz '^FuzzXxx$' -fuzztime 1m PKG.
var slowFuzzBuild = map[string]bool{".": true, "./etcdapi": true}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// target is one fuzz function of one package.
type target struct {
	pkg  string // as go test takes it: "." or "./internal/wire"
	dir  string // absolute directory of the package
	name string // FuzzXxx
}

func TestFuzzShort(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to run the fuzz targets and was not found on PATH (go test puts GOROOT/bin there): %v", err)
	}
	root := moduleRoot(t, goBin)
	targets, err := findTargets(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(targets) == 0 {
		t.Fatalf("no fuzz targets found under %s", root)
	}
	env := childEnv(os.Environ())
	bin := t.TempDir()
	built := map[string]bool{}
	for _, tg := range targets {
		// Subtests run one after another: one fuzz worker at a time.
		name := strings.TrimPrefix(tg.pkg, "./")
		if name == "." {
			name = "root"
		}
		t.Run(name+"."+tg.name, func(t *testing.T) {
			if !built[tg.pkg] {
				built[tg.pkg] = true
				buildTarget(t, goBin, root, env, bin, tg)
			}
			runTarget(t, goBin, root, env, tg)
		})
	}
}

// buildTarget builds tg's package as -fuzz does (every dependency
// instrumented for coverage), so that the build, which on a cold cache
// takes minutes, is cached before fuzzing and does not count against
// targetTimeout.
func buildTarget(t *testing.T, goBin, root string, env []string, bin string, tg target) {
	exe := filepath.Join(bin, strings.NewReplacer("/", "_", ".", "_").Replace(tg.pkg)+".test")
	r := goRun(t, goBin, root, env, buildTimeout, "test", "-c", "-o", exe, "-fuzz", "^"+tg.name+"$", tg.pkg)
	switch {
	case r.ctxErr != nil:
		t.Fatalf("%s did not finish within %v and was killed: %v\n%s", r.command, r.timeout, r.ctxErr, tail(r.out))
	case r.err != nil:
		t.Fatalf("%s: %v\n%s", r.command, r.err, tail(r.out))
	}
	t.Logf("built with fuzz instrumentation in %v", r.took)
}

// runTarget fuzzes tg for fuzzTime in a child go test.
func runTarget(t *testing.T, goBin, root string, env []string, tg target) {
	corpus := filepath.Join(tg.dir, "testdata", "fuzz", tg.name)
	before := corpusFiles(corpus)
	r := goRun(t, goBin, root, env, targetTimeout, "test", "-run", "^$", "-fuzz", "^"+tg.name+"$",
		"-fuzztime", fuzzTime.String(), "-fuzzminimizetime", minimizeTime.String(),
		"-parallel", "1", "-timeout", childTimeout.String(), tg.pkg)
	switch {
	case r.ctxErr != nil:
		t.Fatalf("%s did not finish within %v and was killed: %v\n%s", r.command, r.timeout, r.ctxErr, tail(r.out))
	case r.err != nil && deadlineRace(r.out, tg.name) && slices.Equal(before, corpusFiles(corpus)):
		// Go 1.26's fuzz coordinator can report its own -fuzztime
		// deadline as a failure of the target (go.dev/issue/75804,
		// fixed in Go 1.27): the run fuzzed for its full time, found
		// nothing and wrote no input.
		t.Logf("%v: fuzzed for -fuzztime, then hit go.dev/issue/75804 (the coordinator's own deadline reported as a failure; no input written): %s", r.took, lastStats(r.out))
		return
	case r.err != nil:
		t.Fatalf("%s failed after %v: %v\n%s\nA failing input found by the fuzzer is in %s: keep it as a regression seed with the fix; `go test -run '%s/<file name>' %s` replays it.",
			r.command, r.took, r.err, tail(r.out), corpus, tg.name, tg.pkg)
	}
	if !strings.Contains(r.out, "now fuzzing with") {
		// go test passes when -fuzztime ends before the seed corpus (and
		// go's cached corpus) have all run once: nothing was fuzzed. Not
		// a failure of the target; a hang there fails the package's own
		// tests.
		t.Logf("%v: the corpus did not finish its baseline run within -fuzztime; nothing was fuzzed:\n%s", r.took, tail(r.out))
		return
	}
	t.Logf("%v: %s", r.took, lastStats(r.out))
}

// result is how a child go command went.
type result struct {
	command string        // for messages: "go test ... (in root)"
	timeout time.Duration // what it was given
	took    time.Duration
	out     string // stdout and stderr
	err     error  // from Wait
	ctxErr  error  // non-nil: killed at the timeout (or the test's end)
}

// goRun runs the go command with args in root, within timeout (and t's
// deadline, less a margin to report in).
func goRun(t *testing.T, goBin, root string, env []string, timeout time.Duration, args ...string) result {
	if dl, ok := t.Deadline(); ok {
		timeout = min(timeout, time.Until(dl)-5*time.Second)
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = root
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// The test binary and its fuzz workers are children of the go
	// command; killTree makes the cancel reach them, and WaitDelay keeps
	// Wait from waiting on an orphan that still holds the output pipe.
	killTree(cmd)
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	return result{
		command: "go " + strings.Join(quoteArgs(args), " ") + " (in " + root + ")",
		timeout: timeout,
		took:    time.Since(start).Round(100 * time.Millisecond),
		out:     out.String(),
		err:     err,
		ctxErr:  ctx.Err(),
	}
}

// deadlineRace reports whether out is that of a fuzz run of target name
// that failed only with go.dev/issue/75804: the coordinator stopping at
// -fuzztime with "context deadline exceeded" and no other failure.
func deadlineRace(out, name string) bool {
	m := regexp.MustCompile(`(?m)^--- FAIL: ` + regexp.QuoteMeta(name) + ` \(([0-9.]+)s\)\n {4}context deadline exceeded\nFAIL\n`).FindStringSubmatch(out)
	if m == nil || strings.Count(out, "--- FAIL") != 1 || strings.Contains(out, "panic:") || !strings.Contains(out, "now fuzzing with") {
		return false
	}
	secs, err := strconv.ParseFloat(m[1], 64)
	return err == nil && time.Duration(secs*float64(time.Second)) >= fuzzTime
}

// corpusFiles lists the inputs saved for a target (none if the directory
// does not exist).
func corpusFiles(dir string) []string {
	entries, _ := os.ReadDir(dir)
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names
}

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot(t *testing.T, goBin string) string {
	out, err := exec.CommandContext(t.Context(), goBin, "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatalf("go env GOMOD: %q: not inside a module", gomod)
	}
	return filepath.Dir(gomod)
}

// findTargets returns the fuzz targets of the module at root, by package
// and name. It skips the tools/ module, directories with their own go.mod,
// and what the go command ignores (testdata, vendor, names starting with
// "." or "_"), and files whose build constraints exclude them. It stats
// every file it walks past: go test's result cache then keys on them.
func findTargets(root string) ([]target, error) {
	var targets []target
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path == root {
				return nil
			}
			if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor" ||
				path == filepath.Join(root, "tools") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
			return nil
		}
		if _, err := os.Stat(path); err != nil { // for the test cache
			return err
		}
		if !strings.HasSuffix(name, "_test.go") {
			return nil
		}
		dir := filepath.Dir(path)
		if ok, err := build.Default.MatchFile(dir, name); err != nil || !ok {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			return err
		}
		pkg := "./" + filepath.ToSlash(rel)
		if rel == "." {
			pkg = "."
		}
		if slowFuzzBuild[pkg] {
			return nil
		}
		for _, fn := range fuzzFuncs(f) {
			targets = append(targets, target{pkg: pkg, dir: dir, name: fn})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("looking for fuzz targets under %s: %w", root, err)
	}
	slices.SortFunc(targets, func(a, b target) int {
		return strings.Compare(a.pkg+" "+a.name, b.pkg+" "+b.name)
	})
	return slices.Compact(targets), nil
}

// fuzzFuncs returns the fuzz targets declared in f: what go test runs as
// one, a top-level func FuzzXxx(*testing.F) where Xxx does not start with
// a lower-case letter.
func fuzzFuncs(f *ast.File) []string {
	testingNames := map[string]bool{} // what the file calls package testing
	for _, imp := range f.Imports {
		if p, err := strconv.Unquote(imp.Path.Value); err == nil && p == "testing" {
			if imp.Name != nil {
				testingNames[imp.Name.Name] = true
			} else {
				testingNames["testing"] = true
			}
		}
	}
	var names []string
	for _, decl := range f.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok || fn.Recv != nil || fn.Type.TypeParams != nil || fn.Type.Results != nil || !isFuzzName(fn.Name.Name) {
			continue
		}
		params := fn.Type.Params.List
		if len(params) != 1 || len(params[0].Names) > 1 {
			continue
		}
		star, ok := params[0].Type.(*ast.StarExpr)
		if !ok {
			continue
		}
		switch x := star.X.(type) {
		case *ast.SelectorExpr:
			if id, ok := x.X.(*ast.Ident); ok && testingNames[id.Name] && x.Sel.Name == "F" {
				names = append(names, fn.Name.Name)
			}
		case *ast.Ident:
			if testingNames["."] && x.Name == "F" {
				names = append(names, fn.Name.Name)
			}
		}
	}
	return names
}

// isFuzzName applies go test's rule for test names to "Fuzz".
func isFuzzName(name string) bool {
	rest, ok := strings.CutPrefix(name, "Fuzz")
	if !ok {
		return false
	}
	r, _ := utf8.DecodeRuneInString(rest)
	return rest == "" || !unicode.IsLower(r)
}

// childEnv is this process's environment for the child go test. go test
// passes the test binary its own environment (its flags are arguments,
// not variables), so two things need care: GOFLAGS, whose test flags
// would apply to the child too (-race slows fuzzing several times and the
// parent's -race run already covers the targets' corpora; -count, -run,
// -v, -json, -timeout and the like would clash with the child's), while its
// build flags (-mod, -tags, -trimpath) must stay; and GOCOVERDIR, set
// under go test -cover, where the child has no coverage to write.
func childEnv(environ []string) []string {
	drop := map[string]bool{
		"race": true, "count": true, "run": true, "skip": true, "v": true, "json": true,
		"timeout": true, "parallel": true, "failfast": true, "shuffle": true, "short": true, "cpu": true,
		"fuzz": true, "fuzztime": true, "fuzzminimizetime": true,
		"bench": true, "benchtime": true, "benchmem": true,
		"cover": true, "covermode": true, "coverpkg": true, "coverprofile": true,
	}
	env := make([]string, 0, len(environ))
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "GOCOVERDIR":
			continue
		case "GOFLAGS":
			var keep []string
			for _, f := range strings.Fields(v) {
				name, _, _ := strings.Cut(strings.TrimLeft(f, "-"), "=")
				if !drop[strings.TrimPrefix(name, "test.")] {
					keep = append(keep, f)
				}
			}
			kv = "GOFLAGS=" + strings.Join(keep, " ")
		}
		env = append(env, kv)
	}
	return env
}

func TestDeadlineRace(t *testing.T) {
	const race = "fuzz: elapsed: 0s, gathering baseline coverage: 58/58 completed, now fuzzing with 1 workers\n" +
		"fuzz: elapsed: 4s, execs: 84541 (24175/sec), new interesting: 3 (total: 61)\n" +
		"--- FAIL: FuzzX (4.08s)\n    context deadline exceeded\nFAIL\nexit status 1\nFAIL\tm/p\t4.098s\n"
	for _, tc := range []struct {
		name, out string
		want      bool
	}{
		{"race", race, true},
		{"other target", strings.ReplaceAll(race, "FuzzX", "FuzzY"), false},
		{"before fuzztime", strings.ReplaceAll(race, "(4.08s)", "(1.50s)"), false},
		{"target's own error", strings.ReplaceAll(race, "    context deadline exceeded\n", "    x_test.go:9: context deadline exceeded\n"), false},
		{"seed corpus", strings.ReplaceAll(race, "now fuzzing with 1 workers", "failure while testing seed corpus entry: FuzzX/seed#0"), false},
		{"crash", race + "--- FAIL: FuzzX (4.10s)\n    panic: boom\n", false},
	} {
		if got := deadlineRace(tc.out, "FuzzX"); got != tc.want {
			t.Errorf("%s: deadlineRace = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestChildEnv(t *testing.T) {
	got := childEnv([]string{"HOME=/h", "GOFLAGS=-race -mod=mod  -count=1 -tags=a,b --v -test.short -trimpath", "GOCOVERDIR=/c", "GOFLAGSX=-race"})
	want := []string{"HOME=/h", "GOFLAGS=-mod=mod -tags=a,b -trimpath", "GOFLAGSX=-race"}
	if !slices.Equal(got, want) {
		t.Errorf("childEnv = %q, want %q", got, want)
	}
}

func TestFuzzFuncs(t *testing.T) {
	const src = `package p

import (
	"testing"
	tt "testing"
)

func FuzzA(f *testing.F)            {}
func FuzzB(g *tt.F)                 {}
func Fuzz(f *testing.F)             {}
func Fuzz_C(f *testing.F)           {}
func Fuzzy(f *testing.F)            {}
func FuzzT(t *testing.T)            {}
func FuzzTwo(f *testing.F, x int)   {}
func FuzzRes(f *testing.F) error    { return nil }
func (r) FuzzMethod(f *testing.F)   {}
func helperFuzz(f *testing.F)       {}
`
	f, err := parser.ParseFile(token.NewFileSet(), "p_test.go", src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	got := fuzzFuncs(f)
	want := []string{"FuzzA", "FuzzB", "Fuzz", "Fuzz_C"}
	if !slices.Equal(got, want) {
		t.Errorf("fuzzFuncs = %q, want %q", got, want)
	}
}

// tail is the end of a child's output, enough for the failure and its
// input's file name.
func tail(s string) string {
	const max = 6000
	if len(s) > max {
		s = "..." + s[len(s)-max:]
	}
	return s
}

// lastStats is the last "fuzz: elapsed: ..." line of a run: its execs and
// rate.
func lastStats(out string) string {
	last := ""
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "fuzz: elapsed:") && strings.Contains(line, "execs:") {
			last = strings.TrimSpace(line)
		}
	}
	return last
}

func quoteArgs(args []string) []string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = a
		if strings.ContainsAny(a, "^$ ") {
			q[i] = "'" + a + "'"
		}
	}
	return q
}
