// Command accord-chaos runs accord's fault-injection harness
// (cmd/internal/chaos) at length and prints the figures: runs x duration x
// members, operations checked, faults of each kind injected, violations
// and acknowledged writes lost. It exits 1 if anything was found; failing
// runs keep their history in a directory it prints.
//
//	go run ./cmd/accord-chaos -seed 1 -duration 60s -members 3,5 -runs 5 -crash-kills 200
//
// Run it from the repository: it builds cmd/accordd first (or give
// -accordd). Interrupting it (Ctrl-C) kills every accordd it started.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/accordkv/accord/cmd/internal/chaos"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		seed      = flag.Uint64("seed", uint64(time.Now().UnixNano()%1_000_000), "seed of the first run; run i uses seed+i")
		duration  = flag.Duration("duration", 60*time.Second, "client time of each run")
		members   = flag.String("members", "3,5", "cluster sizes, comma-separated; -runs runs of each")
		runs      = flag.Int("runs", 5, "runs per cluster size")
		kills     = flag.Int("crash-kills", 200, "SIGKILLs of the crash loop (0: no crash loop)")
		crashSize = flag.Int("crash-members", 3, "cluster size of the crash loop")
		accordd   = flag.String("accordd", "", "accordd binary (default: build ./cmd/accordd)")
		dir       = flag.String("dir", "", "where runs create their directories (default $TMPDIR)")
		keep      = flag.Bool("keep", false, "keep the directories of passing runs too")
		faults    = flag.String("faults", "", "fault kinds to inject, comma-separated (default all: "+strings.Join(chaos.AllFaults, ",")+")")
		election  = flag.Duration("election-timeout", 300*time.Millisecond, "accordd --election-timeout")
		regs      = flag.Int("register-clients", 6, "register clients (porcupine)")
		appends   = flag.Int("append-clients", 2, "multi-key append transaction clients")
		leases    = flag.Int("lease-clients", 1, "lease clients")
		quiet     = flag.Bool("q", false, "print only the figures")
	)
	flag.Parse()
	logger := log.New(os.Stderr, "", log.Ltime|log.Lmicroseconds)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var sizes []int
	for _, s := range strings.Split(*members, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			logger.Printf("-members %q: want sizes like 3,5", *members)
			return 2
		}
		sizes = append(sizes, n)
	}
	bin := *accordd
	if bin == "" {
		tmp, err := os.MkdirTemp("", "accord-chaos-bin-")
		if err != nil {
			logger.Print(err)
			return 1
		}
		defer os.RemoveAll(tmp)
		logger.Print("building accordd")
		if bin, err = chaos.Build(ctx, tmp); err != nil {
			logger.Print(err)
			return 1
		}
	}
	base := chaos.Config{
		Accordd:         bin,
		Dir:             *dir,
		KeepData:        *keep,
		Duration:        *duration,
		ElectionTimeout: *election,
		RegisterClients: *regs,
		AppendClients:   *appends,
		LeaseClients:    *leases,
		CrashKills:      *kills,
	}
	if *faults != "" {
		base.Faults = strings.Split(*faults, ",")
	}
	if !*quiet {
		base.Logf = logger.Printf
	}

	total := &chaos.Report{}
	failed := false
	i := uint64(0)
	for _, size := range sizes {
		for range *runs {
			cfg := base
			cfg.Seed, cfg.Members = *seed+i, size
			i++
			rep, err := chaos.Run(ctx, cfg)
			if err != nil {
				logger.Printf("run (seed %d, %d members): %v", cfg.Seed, size, err)
				return 1
			}
			logger.Printf("run seed %d, %d members: %d violations, %d acked writes lost", cfg.Seed, size, rep.NumViolations, rep.LostWrites)
			failed = failed || rep.Failed()
			total.Add(rep)
			if ctx.Err() != nil {
				break
			}
		}
	}
	crash := &chaos.Report{}
	if *kills > 0 && ctx.Err() == nil {
		cfg := base
		cfg.Seed, cfg.Members = *seed, *crashSize
		rep, err := chaos.CrashLoop(ctx, cfg)
		if err != nil {
			logger.Printf("crash loop: %v", err)
			return 1
		}
		failed = failed || rep.Failed()
		crash.Add(rep)
	}

	fmt.Printf("\n== fault runs (seeds %d..%d, %v each) ==\n", *seed, *seed+i-1, *duration)
	total.Print(os.Stdout)
	if crash.Runs > 0 {
		fmt.Printf("\n== crash loop (seed %d, %d members) ==\n", *seed, *crashSize)
		crash.Print(os.Stdout)
	}
	all := &chaos.Report{}
	all.Add(total)
	all.Add(crash)
	fmt.Printf("\n== total: %d violations, %d of %d acknowledged writes lost ==\n", all.NumViolations, all.LostWrites, all.AckedWrites)
	if ctx.Err() != nil {
		fmt.Println("interrupted")
		return 1
	}
	if failed {
		return 1
	}
	return 0
}
