package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestReserve(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		port, err := Reserve("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if port < lo || port >= hi {
			t.Fatalf("port %d outside %d-%d", port, lo, hi)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("reserved port %d does not bind: %v", port, err)
		}
		ln.Close()
	}
	if _, err := Reserve("192.0.2.1"); err == nil {
		t.Fatal("Reserve on an address this host does not have succeeded")
	}
}
