// Command accordbench puts load on any server that speaks the etcd v3 API
// (accord through etcdapi, or etcd itself) with clientv3, and prints one row
// per workload: throughput and latency percentiles.
//
// Usage:
//
//	accordbench [flags]                      run the rows against --endpoints
//	accordbench compare [--title T] NAME=FILE ...
//	                                         medians of several --json runs, side by side
//	accordbench fill [--keys N --versions V ...]
//	                                         write N keys V times, one Put each (.ci/bench-state)
//	accordbench probe [--endpoints E]        time until a linearizable Get succeeds
//
// The rows are:
//
//	put               Put of a random key of --key-space, --value-size bytes
//	get-linearizable  Get of a random (existing) key, linearizable (clientv3's default)
//	get-serializable  the same Get with WithSerializable: served by the member asked
//	watch             one watcher per client on a prefix; the workers Put a timestamp
//	                  under it; latency is from the start of the Put to the event's
//	                  arrival at a watcher, ops/s counts events received (all watchers)
//
// Each row first runs for --warmup unrecorded, then for --duration (or
// --ops operations). --workers requests are in flight at once, spread over
// --clients clientv3 clients (each its own gRPC connection, pinned to one
// endpoint, round robin over --endpoints as etcd's benchmark tool does).
// Everything is bounded: a row never runs longer than --row-timeout.
//
// With --server-pids (Linux, servers on this host) each row also reports
// the CPU time the server processes used per operation: a measure of
// efficiency that a busy machine disturbs less than throughput.
//
// The exit status is 1 when a row failed or saw errors (after printing
// every row), 2 for bad flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var ue usageError
	switch {
	case err == nil:
	case errors.As(err, &ue):
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "accordbench:", err)
		}
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "accordbench:", err)
		os.Exit(1)
	}
}

// usageError marks a bad command line (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// errRowsFailed is returned by run after printing, when a row failed or
// counted errors.
var errRowsFailed = errors.New("some rows failed or saw errors (see the table)")

// run is main without the process: it parses args, runs the bench or the
// compare subcommand, and writes the output to stdout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "compare":
			return runCompare(args[1:], stdout, stderr)
		case "fill":
			return runFill(ctx, args[1:], stdout, stderr)
		case "probe":
			return runProbe(ctx, args[1:], stdout, stderr)
		}
	}
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return usageError{err}
	}
	rep, err := runBench(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	if cfg.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printTable(stdout, rep)
	}
	for _, r := range rep.Rows {
		if r.Ops == 0 || r.Errors > 0 || r.Error != "" {
			return errRowsFailed
		}
	}
	return nil
}

// config is the parsed command line.
type config struct {
	Endpoints      []string
	Clients        int
	Workers        int
	Rows           []string
	Duration       time.Duration
	Ops            int64
	Warmup         time.Duration
	RowTimeout     time.Duration
	RequestTimeout time.Duration
	DialTimeout    time.Duration
	Wait           time.Duration
	KeySpace       int
	ValueSize      int
	Prefix         string
	JSON           bool
	ServerPIDs     []int
}

// Row names, in the order they run by default.
const (
	rowPut    = "put"
	rowGetLin = "get-linearizable"
	rowGetSer = "get-serializable"
	rowWatch  = "watch"
)

var allRows = []string{rowPut, rowGetLin, rowGetSer, rowWatch}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("accordbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg       config
		endpoints string
		rows      string
	)
	fs.StringVar(&endpoints, "endpoints", "127.0.0.1:2379", "comma-separated client endpoints (host:port or http://host:port)")
	fs.IntVar(&cfg.Clients, "clients", 1, "clientv3 clients, each one gRPC connection pinned to one endpoint (round robin)")
	fs.IntVar(&cfg.Workers, "workers", 16, "concurrent requests in flight, spread over the clients")
	fs.IntVar(&cfg.Workers, "conns", 16, "alias of --workers")
	fs.StringVar(&rows, "rows", strings.Join(allRows, ","), "comma-separated rows to run: "+strings.Join(allRows, ", "))
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, "measured time per row (ignored with --ops)")
	fs.Int64Var(&cfg.Ops, "ops", 0, "measured operations per row instead of --duration (0: use --duration)")
	fs.DurationVar(&cfg.Warmup, "warmup", time.Second, "unrecorded load before each row")
	fs.DurationVar(&cfg.RowTimeout, "row-timeout", 2*time.Minute, "hard bound on one row, warmup and setup included")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", 10*time.Second, "timeout of one request")
	fs.DurationVar(&cfg.DialTimeout, "dial-timeout", 5*time.Second, "clientv3 dial timeout")
	fs.DurationVar(&cfg.Wait, "wait", 0, "first wait up to this long until every endpoint answers a linearizable Get (0: don't wait)")
	fs.IntVar(&cfg.KeySpace, "key-space", 10000, "number of distinct keys for put and get")
	fs.IntVar(&cfg.ValueSize, "value-size", 256, "value size in bytes (at least 8 for the watch row, which stores a timestamp)")
	fs.StringVar(&cfg.Prefix, "prefix", "accordbench/", "prefix of every key written")
	fs.BoolVar(&cfg.JSON, "json", false, "print the results as JSON instead of a table")
	var pids string
	fs.StringVar(&pids, "server-pids", "", "comma-separated PIDs of the server processes (on this Linux host) whose CPU time per op to report")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: accordbench [flags]\n       accordbench compare [--title T] NAME=FILE.json ...\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var errs []error
	for e := range strings.SplitSeq(endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			cfg.Endpoints = append(cfg.Endpoints, e)
		}
	}
	if len(cfg.Endpoints) == 0 {
		errs = append(errs, errors.New("--endpoints is empty"))
	}
	for p := range strings.SplitSeq(pids, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		pid, err := strconv.Atoi(p)
		if err != nil || pid <= 0 {
			errs = append(errs, fmt.Errorf("--server-pids: %q is not a process ID", p))
			continue
		}
		cfg.ServerPIDs = append(cfg.ServerPIDs, pid)
	}
	for r := range strings.SplitSeq(rows, ",") {
		r = strings.TrimSpace(r)
		switch r {
		case "":
			continue
		case rowPut, rowGetLin, rowGetSer, rowWatch:
			cfg.Rows = append(cfg.Rows, r)
		default:
			errs = append(errs, fmt.Errorf("--rows: unknown row %q (want %s)", r, strings.Join(allRows, ", ")))
		}
	}
	if len(cfg.Rows) == 0 && rows == "" {
		errs = append(errs, errors.New("--rows is empty"))
	}
	if cfg.Clients < 1 {
		errs = append(errs, fmt.Errorf("--clients %d: want at least 1", cfg.Clients))
	}
	if cfg.Workers < 1 {
		errs = append(errs, fmt.Errorf("--workers %d: want at least 1", cfg.Workers))
	}
	if cfg.Ops < 0 {
		errs = append(errs, fmt.Errorf("--ops %d is negative", cfg.Ops))
	}
	if cfg.Ops == 0 && cfg.Duration <= 0 {
		errs = append(errs, fmt.Errorf("--duration %v: want > 0 (or set --ops)", cfg.Duration))
	}
	if cfg.Warmup < 0 {
		errs = append(errs, fmt.Errorf("--warmup %v is negative", cfg.Warmup))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--row-timeout", cfg.RowTimeout}, {"--request-timeout", cfg.RequestTimeout}, {"--dial-timeout", cfg.DialTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s %v: want > 0", d.name, d.v))
		}
	}
	if cfg.Ops == 0 && cfg.Duration > 0 && cfg.RowTimeout > 0 && cfg.Warmup+cfg.Duration >= cfg.RowTimeout {
		errs = append(errs, fmt.Errorf("--row-timeout %v must exceed --warmup + --duration (%v)", cfg.RowTimeout, cfg.Warmup+cfg.Duration))
	}
	if cfg.Wait < 0 {
		errs = append(errs, fmt.Errorf("--wait %v is negative", cfg.Wait))
	}
	if cfg.KeySpace < 1 {
		errs = append(errs, fmt.Errorf("--key-space %d: want at least 1", cfg.KeySpace))
	}
	if cfg.ValueSize < 0 {
		errs = append(errs, fmt.Errorf("--value-size %d is negative", cfg.ValueSize))
	}
	for _, r := range cfg.Rows {
		if r == rowWatch && cfg.ValueSize < 8 {
			errs = append(errs, fmt.Errorf("--value-size %d: the watch row needs at least 8 bytes", cfg.ValueSize))
		}
	}
	return cfg, errors.Join(errs...)
}

// Report is what one run measured; --json prints it.
type Report struct {
	Endpoints     []string `json:"endpoints"`
	ServerVersion string   `json:"server_version,omitempty"`
	Clients       int      `json:"clients"`
	Workers       int      `json:"workers"`
	KeySpace      int      `json:"key_space"`
	ValueSize     int      `json:"value_size"`
	Rows          []Result `json:"rows"`
}

// Result is one row's measurement. Latencies are in milliseconds.
type Result struct {
	Row       string  `json:"row"`
	Ops       int64   `json:"ops"`
	Errors    int64   `json:"errors"`
	Error     string  `json:"error,omitempty"` // the first error seen, or why the row failed
	Seconds   float64 `json:"seconds"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	MeanMs    float64 `json:"mean_ms"`
	MaxMs     float64 `json:"max_ms"`

	// ServerCPUUsPerOp is the CPU time the --server-pids used during the
	// measured phase, per op, in microseconds; 0 without --server-pids.
	ServerCPUUsPerOp float64 `json:"server_cpu_us_per_op,omitempty"`
}

func printTable(w io.Writer, rep *Report) {
	ver := rep.ServerVersion
	if ver == "" {
		ver = "unknown"
	}
	fmt.Fprintf(w, "endpoints %s (server %s), %d clients, %d workers, key space %d, value %d B\n",
		strings.Join(rep.Endpoints, ","), ver, rep.Clients, rep.Workers, rep.KeySpace, rep.ValueSize)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	var names []string
	for _, r := range rep.Rows {
		names = append(names, r.Row)
	}
	cpu := false
	for _, r := range rep.Rows {
		cpu = cpu || r.ServerCPUUsPerOp > 0
	}
	hdr := padRight("row", names) + "\tops/s\tp50\tp99\tops\terrors\t"
	if cpu {
		hdr += "server cpu/op\t"
	}
	fmt.Fprintln(tw, hdr)
	var notes []string
	for _, r := range rep.Rows {
		line := fmt.Sprintf("%s\t%.1f\t%s\t%s\t%d\t%d\t", padRight(r.Row, names), r.OpsPerSec, fmtMs(r.P50Ms), fmtMs(r.P99Ms), r.Ops, r.Errors)
		if cpu {
			line += fmtUs(r.ServerCPUUsPerOp) + "\t"
		}
		fmt.Fprintln(tw, line)
		if r.Error != "" {
			notes = append(notes, fmt.Sprintf("%s: %s", r.Row, r.Error))
		}
	}
	tw.Flush()
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
}

// fmtUs prints a CPU time in microseconds, "-" if unknown.
func fmtUs(us float64) string {
	if us <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0fus", us)
}

// fmtMs prints a latency in milliseconds with three significant digits.
func fmtMs(ms float64) string {
	switch {
	case ms <= 0:
		return "-"
	case ms < 1:
		return fmt.Sprintf("%.3fms", ms)
	case ms < 100:
		return fmt.Sprintf("%.2fms", ms)
	default:
		return fmt.Sprintf("%.0fms", ms)
	}
}
