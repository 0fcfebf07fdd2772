package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// grpc's callback serializer goroutines exit a moment after Close.
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	)
}

// TestBenchInProcess runs every row briefly against an in-process server
// and checks that each one measured something and the output is sane.
func TestBenchInProcess(t *testing.T) {
	ep := startCluster(t, 1, 150*time.Millisecond, true)[0]
	args := []string{
		"--endpoints", ep, "--clients", "2", "--workers", "4",
		"--duration", "200ms", "--warmup", "50ms", "--key-space", "100",
		"--wait", "5s", "--row-timeout", "5s",
		// The server runs in this process.
		"--server-pids", strconv.Itoa(os.Getpid()),
	}

	var out, logs bytes.Buffer
	if err := run(t.Context(), append(args, "--json"), &out, &logs); err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), logs.String())
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("decoding --json output: %v\n%s", err, out.String())
	}
	if rep.Clients != 2 || rep.Workers != 4 || rep.ValueSize != 256 || len(rep.Endpoints) != 1 {
		t.Errorf("report header = %+v", rep)
	}
	if !strings.HasPrefix(rep.ServerVersion, "3.") {
		t.Logf("server version %q (Maintenance.Status not served yet?)", rep.ServerVersion)
	}
	var got []string
	for _, r := range rep.Rows {
		got = append(got, r.Row)
		switch {
		case r.Ops <= 0, r.OpsPerSec <= 0:
			t.Errorf("%s: no ops: %+v", r.Row, r)
		case r.Errors != 0 || r.Error != "":
			t.Errorf("%s: errors: %+v", r.Row, r)
		case r.P50Ms <= 0 || r.P99Ms < r.P50Ms || r.MaxMs < r.P99Ms || r.MeanMs <= 0:
			t.Errorf("%s: latencies out of order: %+v", r.Row, r)
		case r.Seconds < 0.2 || r.Seconds > 5:
			t.Errorf("%s: measured %.3fs, want about 0.2s", r.Row, r.Seconds)
		case r.OpsPerSec*r.Seconds < float64(r.Ops)*0.99 || r.OpsPerSec*r.Seconds > float64(r.Ops)*1.01:
			t.Errorf("%s: ops/s %.1f * %.3fs != %d ops", r.Row, r.OpsPerSec, r.Seconds, r.Ops)
		case runtime.GOOS == "linux" && r.ServerCPUUsPerOp <= 0:
			t.Errorf("%s: no server CPU time per op: %+v", r.Row, r)
		}
	}
	if want := strings.Join(allRows, ","); strings.Join(got, ",") != want {
		t.Errorf("rows = %v, want %s", got, want)
	}

	// The table names every row, and --ops bounds a row by count.
	out.Reset()
	logs.Reset()
	// 2000 ops: the server's CPU time is read from /proc in clock ticks
	// (10 ms), and 50 fast ops can take less than one.
	if err := run(t.Context(), append(args, "--ops", "2000", "--rows", "put,get-serializable"), &out, &logs); err != nil {
		t.Fatalf("run --ops: %v\n%s\n%s", err, out.String(), logs.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.Contains(lines[1], "ops/s") || !strings.Contains(lines[1], "p99") || !strings.Contains(lines[1], "server cpu/op") {
		t.Fatalf("table:\n%s", out.String())
	}
	for i, row := range []string{rowPut, rowGetSer} {
		f := strings.Fields(lines[2+i])
		if len(f) != 7 || f[0] != row || f[4] != "2000" || f[5] != "0" {
			t.Errorf("table line %q: want row %s with 2000 ops and 0 errors", lines[2+i], row)
		}
	}
}

// TestBenchUnreachable: a row against nothing fails within its bounds and
// says why, and the run reports failure.
func TestBenchUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep := ln.Addr().String()
	ln.Close() // nothing listens there now

	var out, logs bytes.Buffer
	start := time.Now()
	err = run(t.Context(), []string{"--endpoints", ep, "--rows", "put", "--duration", "300ms", "--warmup", "0s",
		"--request-timeout", "100ms", "--dial-timeout", "100ms", "--json"}, &out, &logs)
	if !errors.Is(err, errRowsFailed) {
		t.Fatalf("run = %v, want errRowsFailed\n%s", err, logs.String())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if len(rep.Rows) != 1 || rep.Rows[0].Ops != 0 || rep.Rows[0].Errors == 0 || rep.Rows[0].Error == "" {
		t.Errorf("rows = %+v, want one failed row with its error", rep.Rows)
	}
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // in the error; "" for success
	}{
		{"defaults", nil, ""},
		{"conns alias", []string{"--conns", "3"}, ""},
		{"unknown row", []string{"--rows", "put,range"}, `unknown row "range"`},
		{"empty endpoints", []string{"--endpoints", ","}, "--endpoints is empty"},
		{"no clients", []string{"--clients", "0"}, "--clients 0"},
		{"no workers", []string{"--workers", "0"}, "--workers 0"},
		{"small value for watch", []string{"--value-size", "4"}, "watch row needs at least 8"},
		{"small value without watch", []string{"--value-size", "4", "--rows", "put"}, ""},
		{"row timeout too short", []string{"--duration", "10s", "--row-timeout", "5s"}, "--row-timeout"},
		{"every problem at once", []string{"--clients", "0", "--key-space", "0"}, "--key-space 0"},
		{"stray argument", []string{"put"}, "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseFlags(tc.args, &bytes.Buffer{})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("parseFlags(%q) = %v", tc.args, err)
				}
				if len(cfg.Rows) == 0 || len(cfg.Endpoints) == 0 {
					t.Errorf("cfg = %+v", cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("parseFlags(%q) = %v, want an error containing %q", tc.args, err, tc.want)
			}
		})
	}
	cfg, err := parseFlags([]string{"--conns", "7"}, &bytes.Buffer{})
	if err != nil || cfg.Workers != 7 {
		t.Errorf("--conns 7: workers %d, err %v", cfg.Workers, err)
	}
	var ue usageError
	if err := run(context.Background(), []string{"--clients", "0"}, &bytes.Buffer{}, &bytes.Buffer{}); !errors.As(err, &ue) {
		t.Errorf("run with a bad flag = %v, want a usageError", err)
	}
}

func TestCompare(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, rows ...Result) string {
		data, err := json.Marshal(Report{Rows: rows})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	put := func(ops, p50, p99, cpu float64) Result {
		return Result{Row: "put", Ops: 10, OpsPerSec: ops, P50Ms: p50, P99Ms: p99, ServerCPUUsPerOp: cpu}
	}
	args := []string{"--title", "1 node",
		"etcd=" + write("e1", put(100, 1, 10, 50)),
		"accord=" + write("a1", put(300, 0.5, 4, 40)),
		"etcd=" + write("e2", put(200, 2, 20, 70)),
		"accord=" + write("a2", put(100, 0.7, 6, 0)), // not measured: left out of the median
		"etcd=" + write("e3", put(900, 3, 30, 60)),
		"accord=" + write("a3", put(250, 0.6, 5, 30), Result{Row: "watch", Errors: 2, Error: "lost"}),
	}
	var out bytes.Buffer
	if err := run(t.Context(), append([]string{"compare"}, args...), &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	t.Logf("\n%s", out.String())
	if len(lines) < 7 || lines[0] != "1 node" || !strings.Contains(lines[1], "etcd 3, accord 3") {
		t.Fatalf("output:\n%s", out.String())
	}
	// Medians: etcd 200 ops/s, p50 2ms, p99 20ms, 60us CPU; accord 250,
	// 0.6ms, 5ms, 35us.
	wantPut := []string{"put", "200.0", "250.0", "1.25x", "2.00ms", "0.600ms", "20.00ms", "5.00ms", "60us", "35us"}
	if got := strings.Fields(lines[5]); strings.Join(got, " ") != strings.Join(wantPut, " ") {
		t.Errorf("put line = %q, want %q", got, wantPut)
	}
	if !strings.HasPrefix(strings.TrimSpace(lines[6]), "watch ") || !strings.Contains(out.String(), "note: accord watch: 1 of 3 rounds failed") {
		t.Errorf("the failed watch row is not reported:\n%s", out.String())
	}

	var ue usageError
	if err := run(t.Context(), []string{"compare", "etcd"}, &out, &bytes.Buffer{}); !errors.As(err, &ue) {
		t.Errorf("compare without '=' = %v, want a usageError", err)
	}
	if err := run(t.Context(), []string{"compare", "etcd=" + filepath.Join(dir, "missing")}, &out, &bytes.Buffer{}); err == nil {
		t.Error("compare of a missing file succeeded")
	}
}

func TestParseStatCPU(t *testing.T) {
	for _, tc := range []struct {
		stat string
		want int64
		ok   bool
	}{
		// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
		{"42 (accordd) S 1 42 42 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 9 0", 287, true},
		{"42 (a b) c)) R 1 42 42 0 -1 0 0 0 0 0 5 6 0 0", 11, true},
		{"42 accordd S 1", 0, false},
		{"42 (x) S 1 2 3", 0, false},
		{"42 (x) S 1 42 42 0 -1 0 0 0 0 0 u 6 0", 0, false},
	} {
		got, err := parseStatCPU([]byte(tc.stat))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseStatCPU(%q) = %d, %v; want %d, ok %v", tc.stat, got, err, tc.want, tc.ok)
		}
	}
	if runtime.GOOS == "linux" {
		if _, err := processCPU([]int{os.Getpid()}); err != nil {
			t.Errorf("processCPU(self): %v", err)
		}
	}
}
