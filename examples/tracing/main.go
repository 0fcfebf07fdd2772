// Command tracing serves an accord store over the etcd v3 API with
// OpenTelemetry tracing: every gRPC call to the store (from etcdctl,
// clientv3 or the HTTP/JSON gateway) becomes a server span, linked to the
// caller's span when the caller propagates its trace context. It shows the
// two hooks etcdapi.Options has for this:
//
//   - GRPCServerOptions takes otelgrpc's stats handler, which starts a span
//     per call and reads the W3C traceparent header;
//   - UnaryInterceptors and StreamInterceptors run inside that span, here to
//     tag it with the member that served it.
//
// The program opens a single-node store, serves it on a loopback port,
// makes a Put and a Get with a traced clientv3 inside one parent span, and
// prints the spans as JSON with OpenTelemetry's stdout exporter: the
// client's and the server's spans of each call share one trace ID.
//
//	go run .                  # in examples/tracing: its own module (it needs OpenTelemetry)
//
// Nothing here sets OpenTelemetry's globals (otel.SetTracerProvider,
// otel.SetTextMapPropagator): the provider and propagator are passed to
// otelgrpc explicitly, as a library embedded in a larger service should.
// In a real service, swap the stdout exporter for an OTLP one
// (go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/accordkv/accord"
	"github.com/accordkv/accord/etcdapi"
)

func main() {
	dir, err := os.MkdirTemp("", "accord-tracing-")
	if err == nil {
		err = run(context.Background(), os.Stdout, dir)
		if rerr := os.RemoveAll(dir); err == nil {
			err = rerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tracing:", err)
		os.Exit(1)
	}
}

// run opens a store in dir, serves it traced on a loopback port, makes one
// traced Put and Get, and writes the spans to w as JSON objects, one per
// span, once they are all ended.
func run(ctx context.Context, w io.Writer, dir string) (err error) {
	exp, err := stdouttrace.New(stdouttrace.WithWriter(w), stdouttrace.WithPrettyPrint())
	if err != nil {
		return err
	}
	// WithSyncer exports each span as it ends; a service would batch
	// (sdktrace.WithBatcher) and export over OTLP.
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { err = errors.Join(err, tp.Shutdown(context.WithoutCancel(ctx))) }()
	otelOpts := []otelgrpc.Option{
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithPropagators(propagation.TraceContext{}),
	}

	store, err := accord.Open(dir, nil)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, store.Close()) }()

	member := attribute.String("accord.member", store.NodeID())
	srv, err := etcdapi.New(store, &etcdapi.Options{
		GRPCServerOptions: []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(otelOpts...))},
		UnaryInterceptors: []grpc.UnaryServerInterceptor{
			func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				trace.SpanFromContext(ctx).SetAttributes(member)
				return h(ctx, req)
			},
		},
		StreamInterceptors: []grpc.StreamServerInterceptor{
			func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				trace.SpanFromContext(ss.Context()).SetAttributes(member)
				return h(srv, ss)
			},
		},
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	// Deferred calls run last first: the server stops before the store.
	defer func() { err = errors.Join(err, srv.Close(), <-served) }()

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{ln.Addr().String()},
		DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelOpts...))},
	})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, cli.Close()) }()

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ctx, span := tp.Tracer("github.com/accordkv/accord/examples/tracing").Start(ctx, "update-config")
	defer span.End()
	if _, err := cli.Put(ctx, "config/feature-x", "on"); err != nil {
		return err
	}
	resp, err := cli.Get(ctx, "config/feature-x")
	if err != nil {
		return err
	}
	span.SetAttributes(attribute.Int64("accord.revision", resp.Header.Revision))
	return nil
}
