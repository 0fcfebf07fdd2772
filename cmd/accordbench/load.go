package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// runFill is `accordbench fill`: it writes --keys keys of --value-size
// bytes, --versions times each (pass after pass over every key), one Put
// per request (so one revision per Put, as etcd's benchmark put does), with
// --workers requests in flight. It prints the number of puts and the time
// they took.
func runFill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("accordbench fill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoints := fs.String("endpoints", "127.0.0.1:2379", "comma-separated client endpoints")
	keys := fs.Int("keys", 100000, "distinct keys")
	versions := fs.Int("versions", 1, "versions of every key (passes)")
	first := fs.Int("first-version", 1, "number of the first pass (for a fill in steps; it only changes the values)")
	valueSize := fs.Int("value-size", 256, "value size in bytes")
	workers := fs.Int("workers", 64, "puts in flight")
	prefix := fs.String("prefix", "fill/", "key prefix")
	timeout := fs.Duration("timeout", 30*time.Minute, "bound on the whole fill")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *keys <= 0 || *versions <= 0 || *workers <= 0 || *valueSize < 0 {
		return usageError{errors.New("--keys, --versions and --workers must be positive")}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	total := int64(*keys) * int64(*versions)
	var next, done atomic.Int64
	var firstErr error
	var mu sync.Mutex
	start := time.Now()
	var wg sync.WaitGroup
	for range *workers {
		wg.Go(func() {
			val := make([]byte, *valueSize)
			for {
				i := next.Add(1) - 1
				if i >= total || ctx.Err() != nil {
					return
				}
				pass, k := int(i)/(*keys)+*first, int(i)%(*keys)
				for j := range val {
					val[j] = byte('a' + (pass+k+j)%26)
				}
				rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := cli.Put(rctx, fmt.Sprintf("%s%08d", *prefix, k), string(val))
				rcancel()
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("put %d: %w", i, err)
					}
					mu.Unlock()
					cancel()
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fill: %d of %d puts: %w", done.Load(), total, err)
	}
	el := time.Since(start)
	fmt.Fprintf(stdout, "puts %d seconds %.3f ops/s %.0f\n", done.Load(), el.Seconds(), float64(done.Load())/el.Seconds())
	return nil
}

// runProbe is `accordbench probe`: it waits for the endpoint's port to
// accept connections, then sends a linearizable Get every --interval until
// one succeeds, and prints how long that took from the probe's start (the
// restart measure: start the server, then the probe). gRPC's reconnection
// backoff (1 s at first) is cut to milliseconds, so that the figure is the
// server's, not the client's.
func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("accordbench probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoint := fs.String("endpoints", "127.0.0.1:2379", "the client endpoint (host:port)")
	key := fs.String("key", "fill/00000000", "key to get")
	interval := fs.Duration("interval", 2*time.Millisecond, "time between attempts")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	hostPort := strings.TrimPrefix(strings.TrimPrefix(*endpoint, "http://"), "https://")
	for {
		c, err := net.DialTimeout("tcp", hostPort, 100*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("probe: %s never accepted a connection: %v", hostPort, err)
		case <-time.After(*interval):
		}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{hostPort},
		DialTimeout: time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: *interval, Multiplier: 1.2, MaxDelay: 20 * time.Millisecond},
			MinConnectTimeout: 200 * time.Millisecond,
		})},
	})
	if err != nil {
		return err
	}
	defer cli.Close()
	for {
		rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err = cli.Get(rctx, *key)
		rcancel()
		if err == nil {
			fmt.Fprintf(stdout, "first-linearizable-get-seconds %.3f\n", time.Since(start).Seconds())
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("probe: no linearizable get within %v: %v", *timeout, err)
		case <-time.After(*interval):
		}
	}
}
