package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
)

// runCompare is `accordbench compare [--title T] NAME=FILE ...`: it reads
// the --json reports, groups them by NAME (in order of first appearance;
// several files of one name are rounds of the same setup), and prints per
// row the median ops/s, p50 and p99 of each name (and server CPU time per
// op, where the reports have it), and the ratio of each later name's
// median ops/s to the first name's.
func runCompare(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("accordbench compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	title := fs.String("title", "", "line printed above the table")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: accordbench compare [--title T] NAME=FILE.json ...\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() == 0 {
		return usageError{errors.New("compare: no NAME=FILE arguments")}
	}
	var names []string
	reports := map[string][]*Report{}
	for _, a := range fs.Args() {
		name, file, ok := strings.Cut(a, "=")
		if !ok || name == "" || file == "" {
			return usageError{fmt.Errorf("compare: %q: want NAME=FILE", a)}
		}
		rep, err := readReport(file)
		if err != nil {
			return err
		}
		if _, seen := reports[name]; !seen {
			names = append(names, name)
		}
		reports[name] = append(reports[name], rep)
	}
	printComparison(stdout, *title, names, reports)
	return nil
}

func readReport(file string) (*Report, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	var rep Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, fmt.Errorf("compare: %s: %w", file, err)
	}
	return &rep, nil
}

// summary is one row of one name, over its rounds.
type summary struct {
	rounds    int // reports that have the row
	opsPerSec float64
	p50, p99  float64
	cpu       float64 // server CPU µs per op; 0 if not measured
	errors    int64   // summed over the rounds
	failed    int     // rounds in which the row failed or saw errors
}

func summarize(reps []*Report, row string) summary {
	var s summary
	var ops, p50, p99, cpu []float64
	for _, rep := range reps {
		for _, r := range rep.Rows {
			if r.Row != row {
				continue
			}
			s.rounds++
			ops = append(ops, r.OpsPerSec)
			p50 = append(p50, r.P50Ms)
			p99 = append(p99, r.P99Ms)
			if r.ServerCPUUsPerOp > 0 {
				cpu = append(cpu, r.ServerCPUUsPerOp)
			}
			s.errors += r.Errors
			if r.Ops == 0 || r.Errors > 0 || r.Error != "" {
				s.failed++
			}
		}
	}
	s.opsPerSec, s.p50, s.p99, s.cpu = median(ops), median(p50), median(p99), median(cpu)
	return s
}

// median of xs; 0 for none. An even count averages the middle two.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

func printComparison(w io.Writer, title string, names []string, reports map[string][]*Report) {
	var rows []string // in order of first appearance
	for _, n := range names {
		for _, rep := range reports[n] {
			for _, r := range rep.Rows {
				if !slices.Contains(rows, r.Row) {
					rows = append(rows, r.Row)
				}
			}
		}
	}
	if title != "" {
		fmt.Fprintln(w, title)
	}
	var counts []string
	for _, n := range names {
		counts = append(counts, fmt.Sprintf("%s %d", n, len(reports[n])))
	}
	fmt.Fprintf(w, "medians over rounds (%s)\n", strings.Join(counts, ", "))
	for _, n := range names {
		r := reports[n][0]
		ver := r.ServerVersion
		if ver == "" {
			ver = "unknown"
		}
		fmt.Fprintf(w, "%s: server %s, %d endpoints, %d clients, %d workers, key space %d, value %d B\n",
			n, ver, len(r.Endpoints), r.Clients, r.Workers, r.KeySpace, r.ValueSize)
	}
	base := names[0]
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	hdr := []string{padRight("row", rows)}
	for _, n := range names {
		hdr = append(hdr, n+" ops/s")
	}
	for _, n := range names[1:] {
		hdr = append(hdr, n+"/"+base)
	}
	for _, n := range names {
		hdr = append(hdr, n+" p50")
	}
	for _, n := range names {
		hdr = append(hdr, n+" p99")
	}
	cpu := false
	for _, n := range names {
		for _, rep := range reports[n] {
			for _, r := range rep.Rows {
				cpu = cpu || r.ServerCPUUsPerOp > 0
			}
		}
	}
	if cpu {
		for _, n := range names {
			hdr = append(hdr, n+" cpu/op")
		}
	}
	fmt.Fprintln(tw, strings.Join(hdr, "\t")+"\t")
	var notes []string
	for _, row := range rows {
		sums := make([]summary, len(names))
		for i, n := range names {
			sums[i] = summarize(reports[n], row)
			if s := sums[i]; s.failed > 0 {
				notes = append(notes, fmt.Sprintf("%s %s: %d of %d rounds failed or saw errors (%d errors)",
					n, row, s.failed, len(reports[n]), s.errors))
			}
			if s := sums[i]; s.rounds < len(reports[n]) {
				notes = append(notes, fmt.Sprintf("%s %s: missing in %d of %d rounds", n, row, len(reports[n])-s.rounds, len(reports[n])))
			}
		}
		cells := []string{padRight(row, rows)}
		for _, s := range sums {
			if s.rounds == 0 {
				cells = append(cells, "-")
			} else {
				cells = append(cells, fmt.Sprintf("%.1f", s.opsPerSec))
			}
		}
		for _, s := range sums[1:] {
			if sums[0].opsPerSec > 0 && s.rounds > 0 {
				cells = append(cells, fmt.Sprintf("%.2fx", s.opsPerSec/sums[0].opsPerSec))
			} else {
				cells = append(cells, "-")
			}
		}
		for _, s := range sums {
			cells = append(cells, fmtMs(s.p50))
		}
		for _, s := range sums {
			cells = append(cells, fmtMs(s.p99))
		}
		if cpu {
			for _, s := range sums {
				cells = append(cells, fmtUs(s.cpu))
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	tw.Flush()
	for _, n := range notes {
		fmt.Fprintln(w, "note:", n)
	}
}

// padRight pads s to the longest of s and names, so that the first column
// of a right-aligned tabwriter table reads left-aligned.
func padRight(s string, names []string) string {
	w := len(s)
	for _, n := range names {
		w = max(w, len(n))
	}
	return fmt.Sprintf("%-*s", w, s)
}
