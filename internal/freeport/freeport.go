// Package freeport hands out loopback ports for servers that must know
// their address before they start, or that restart on it: test clusters
// and the chaos harness.
//
// A port the kernel picks for port 0 comes from its ephemeral range
// (32768-60999 on Linux), and once released it can be taken as the local
// port of some outgoing connection before the server binds it again
// ("bind: address already in use" on a restart, seen in tests and in the
// chaos harness). Ports from here lie below that range, are checked
// bindable, and are never handed out twice by one process.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
)

const lo, hi = 10000, 30000

var (
	mu   sync.Mutex
	used = map[string]bool{}
)

// Reserve returns a free TCP port on ip.
func Reserve(ip string) (int, error) {
	mu.Lock()
	defer mu.Unlock()
	var err error
	for range 200 {
		port := lo + rand.IntN(hi-lo)
		addr := net.JoinHostPort(ip, strconv.Itoa(port))
		if used[addr] {
			continue
		}
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err != nil {
			continue
		}
		ln.Close()
		used[addr] = true
		return port, nil
	}
	return 0, fmt.Errorf("freeport: no free port on %s in %d-%d: %v", ip, lo, hi, err)
}

// Addr returns "127.0.0.1:port" for a free port.
func Addr() (string, error) {
	port, err := Reserve("127.0.0.1")
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}
