// Command quickstart is a tour of accord in one program: it opens a
// single-node store, watches a prefix, writes a few keys, runs a
// compare-and-swap transaction, attaches a key to a lease and revokes it,
// then reads everything back, printing what happens at each step.
//
//	go run ./examples/quickstart             # in a temporary directory, removed at exit
//	go run ./examples/quickstart -dir data   # in ./data, kept (run it twice and watch versions grow)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/accordkv/accord"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain parses the flags, picks the data directory and runs the tour.
// It returns the process exit code.
func realMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "data directory (default: a temporary directory, removed at exit)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" {
		tmp, err := os.MkdirTemp("", "accord-quickstart-")
		if err != nil {
			fmt.Fprintln(stderr, "quickstart:", err)
			return 1
		}
		defer os.RemoveAll(tmp)
		*dir = tmp
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	fmt.Fprintf(stdout, "data directory: %s\n", *dir)
	if err := run(ctx, stdout, *dir); err != nil {
		fmt.Fprintln(stderr, "quickstart:", err)
		return 1
	}
	return 0
}

// run opens the store in dir and takes it through its paces, writing a
// report to out.
func run(ctx context.Context, out io.Writer, dir string) (err error) {
	s, err := accord.Open(dir, nil) // nil Options: a single node with defaults
	if err != nil {
		return err
	}
	defer func() {
		if cerr := s.Close(); err == nil {
			err = cerr
		}
	}()
	fmt.Fprintln(out, "store open")

	// Watch everything under the prefix. The watch covers every write made
	// after Watch returns; cancelling wctx ends it.
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	events := s.Watch(wctx, "quickstart/", accord.WithPrefix())

	// waitEvents prints watch events until the one at revision rev.
	waitEvents := func(rev int64) error {
		for {
			select {
			case resp, ok := <-events:
				if !ok {
					return errors.New("watch ended early")
				}
				if resp.Err != nil {
					return resp.Err
				}
				for _, ev := range resp.Events {
					fmt.Fprintf(out, "  watch: rev %d %s %s %q\n", ev.KV.ModRevision, ev.Type, ev.KV.Key, ev.KV.Value)
				}
				if resp.Revision >= rev {
					return nil
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}

	// Plain writes.
	for _, kv := range [][2]string{{"quickstart/greeting", "hello"}, {"quickstart/color", "blue"}} {
		put, err := s.Put(ctx, kv[0], []byte(kv[1]))
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "put %s = %s at revision %d\n", kv[0], kv[1], put.Revision)
		if err := waitEvents(put.Revision); err != nil {
			return err
		}
	}

	// A transaction: change the color only if it is still blue. The second
	// attempt finds green and takes the Else branch.
	for _, attempt := range []string{"green", "red"} {
		txn, err := s.Txn(ctx).
			If(accord.Compare(accord.Value("quickstart/color"), "=", "blue")).
			Then(accord.OpPut("quickstart/color", []byte(attempt))).
			Else(accord.OpGet("quickstart/color")).
			Commit()
		if err != nil {
			return err
		}
		if txn.Succeeded {
			fmt.Fprintf(out, "txn: color was blue, set to %s at revision %d\n", attempt, txn.Revision)
			if err := waitEvents(txn.Revision); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(out, "txn: color is no longer blue (it is %s); %s not written\n",
				txn.Responses[0].Get.KVs[0].Value, attempt)
		}
	}

	// A lease: the session key lives as long as the lease does.
	lease, err := s.Grant(ctx, 10*time.Second)
	if err != nil {
		return err
	}
	put, err := s.Put(ctx, "quickstart/session", []byte("active"), accord.WithLease(lease))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "put quickstart/session with a lease at revision %d\n", put.Revision)
	if err := waitEvents(put.Revision); err != nil {
		return err
	}
	if err := s.Revoke(ctx, lease); err != nil {
		return err
	}
	fmt.Fprintln(out, "lease revoked: its keys are deleted with it")
	// Revoke does not report a revision; a read tells where the store is
	// now, which is the revision of the deletion.
	now, err := s.Get(ctx, "quickstart/session", accord.WithCountOnly())
	if err != nil {
		return err
	}
	if err := waitEvents(now.Revision); err != nil {
		return err
	}

	// Read everything back (linearizable: reflects every write above).
	resp, err := s.Get(ctx, "quickstart/", accord.WithPrefix())
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "read back at revision %d: %d keys\n", resp.Revision, resp.Count)
	for _, kv := range resp.KVs {
		fmt.Fprintf(out, "  %s = %s (version %d, modified at %d)\n", kv.Key, kv.Value, kv.Version, kv.ModRevision)
	}
	return nil
}
