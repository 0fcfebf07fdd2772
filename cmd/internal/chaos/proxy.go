package chaos

import (
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"
)

// The network between members. Member i listens for peers on its own
// loopback address 127.0.0.(10+i) and advertises a proxy on the same
// address; accord dials loopback peers from the address its peer listener
// bound, so the proxy in front of member b knows that a connection from
// 127.0.0.(10+a) comes from member a. Faults are set per directed link
// (from, to): what happens to the bytes member `from` sends to member `to`,
// on connections either of them opened.

// nodeIP is the loopback address of member idx.
func nodeIP(idx int) string { return "127.0.0." + strconv.Itoa(10+idx) }

// nodeOfIP is the member whose loopback address ip is, or -1.
func nodeOfIP(ip net.IP) int {
	v4 := ip.To4()
	if v4 == nil || v4[0] != 127 || v4[1] != 0 || v4[2] != 0 || v4[3] <= 10 {
		return -1
	}
	return int(v4[3]) - 10
}

type link struct{ from, to int }

// linkFault is what happens to the bytes of one directed link.
type linkFault struct {
	// Hold stalls the bytes (as a network that drops every packet does to
	// TCP) until the fault is lifted; then they flow again, late.
	Hold bool
	// Reset closes the link's connections and refuses new ones at once.
	Reset bool
	// Delay and Jitter add latency to every chunk of bytes, in order.
	Delay, Jitter time.Duration
	// DropProb is the chance that a chunk closes its connection; StallProb
	// the chance that it waits up to StallMax first.
	DropProb, StallProb float64
	StallMax            time.Duration
}

// network holds the link faults and every proxied connection. Safe for
// concurrent use.
type network struct {
	mu      sync.Mutex // guards the fields below
	faults  map[link]linkFault
	changed chan struct{} // closed and replaced whenever faults change
	conns   map[*proxyConn]struct{}
	rng     *rand.Rand // jitter, drops and stalls
}

func newNetwork(seed uint64) *network {
	return &network{
		faults:  make(map[link]linkFault),
		changed: make(chan struct{}),
		conns:   make(map[*proxyConn]struct{}),
		rng:     rand.New(rand.NewPCG(seed, 0x6e6574)),
	}
}

// set replaces the faults of the given links (a zero linkFault lifts them)
// and closes the connections of links that now reset.
func (n *network) set(faults map[link]linkFault) {
	n.mu.Lock()
	var doomed []*proxyConn
	for l, f := range faults {
		if f == (linkFault{}) {
			delete(n.faults, l)
		} else {
			n.faults[l] = f
		}
	}
	for pc := range n.conns {
		if n.faults[link{pc.client, pc.owner}].Reset || n.faults[link{pc.owner, pc.client}].Reset {
			doomed = append(doomed, pc)
		}
	}
	close(n.changed)
	n.changed = make(chan struct{})
	n.mu.Unlock()
	for _, pc := range doomed {
		pc.close()
	}
}

// clear lifts every fault.
func (n *network) clear() {
	n.mu.Lock()
	clear(n.faults)
	close(n.changed)
	n.changed = make(chan struct{})
	n.mu.Unlock()
}

// fault returns the fault of l and a channel closed when faults change.
func (n *network) fault(l link) (linkFault, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.faults[l], n.changed
}

func (n *network) float() float64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rng.Float64()
}

func (n *network) durationN(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return time.Duration(n.rng.Int64N(int64(d)))
}

// proxy forwards the peer connections of one member (owner) from its
// advertised address to its peer listener.
type proxy struct {
	net      *network
	owner    int
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup
}

// startProxy listens on addr and forwards to upstream.
func startProxy(nw *network, owner int, ln net.Listener, upstream string) *proxy {
	p := &proxy{net: nw, owner: owner, ln: ln, upstream: upstream}
	p.wg.Go(p.acceptLoop)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

// close stops accepting, closes this proxy's connections and waits for
// its goroutines.
func (p *proxy) close() {
	p.ln.Close()
	p.net.mu.Lock()
	var mine []*proxyConn
	for pc := range p.net.conns {
		if pc.p == p {
			mine = append(mine, pc)
		}
	}
	p.net.mu.Unlock()
	for _, pc := range mine {
		pc.close()
	}
	p.wg.Wait()
}

func (p *proxy) acceptLoop() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// proxyConn is one proxied connection: client (member `client`, or -1 for
// an unknown source) to the owner's upstream listener.
type proxyConn struct {
	p             *proxy
	client, owner int
	down, up      net.Conn
	once          sync.Once
	done          chan struct{}
}

func (pc *proxyConn) close() {
	pc.once.Do(func() {
		close(pc.done)
		pc.down.Close()
		if pc.up != nil {
			pc.up.Close()
		}
		pc.p.net.mu.Lock()
		delete(pc.p.net.conns, pc)
		pc.p.net.mu.Unlock()
	})
}

func (p *proxy) serve(c net.Conn) {
	from := -1
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		from = nodeOfIP(a.IP)
	}
	pc := &proxyConn{p: p, client: from, owner: p.owner, down: c, done: make(chan struct{})}
	in, _ := p.net.fault(link{from, p.owner})
	out, _ := p.net.fault(link{p.owner, from})
	if in.Reset || out.Reset || (in.DropProb > 0 && p.net.float() < in.DropProb) {
		c.Close()
		return
	}
	// Dial the member from the client's own address, so that its peer
	// listener sees the same source as the proxy did.
	d := net.Dialer{Timeout: 2 * time.Second}
	if from >= 0 {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(nodeIP(from))}
	}
	up, err := d.Dial("tcp", p.upstream)
	if err != nil {
		c.Close()
		return
	}
	pc.up = up
	p.net.mu.Lock()
	p.net.conns[pc] = struct{}{}
	p.net.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { pc.pump(link{from, p.owner}, c, up) })
	wg.Go(func() { pc.pump(link{p.owner, from}, up, c) })
	wg.Wait()
	pc.close()
}

type chunk struct {
	data []byte
	due  time.Time
}

// pump copies src to dst applying the faults of l. A reader goroutine
// stamps each chunk with its due time (read time plus delay) so that a
// delay adds latency without cutting throughput; this goroutine writes the
// chunks in order once due and not held.
func (pc *proxyConn) pump(l link, src, dst net.Conn) {
	nw := pc.p.net
	ch := make(chan chunk, 64)
	pc.p.wg.Go(func() {
		defer close(ch)
		var last time.Time
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				f, _ := nw.fault(l)
				due := time.Now()
				if f.Delay > 0 || f.Jitter > 0 {
					due = due.Add(f.Delay + nw.durationN(f.Jitter))
				}
				if due.Before(last) {
					due = last
				}
				last = due
				select {
				case ch <- chunk{data: buf[:n], due: due}:
				case <-pc.done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	for c := range ch {
		if wait := time.Until(c.due); wait > 0 {
			if !pc.sleep(wait) {
				return
			}
		}
		for {
			f, changed := nw.fault(l)
			if f.Reset {
				pc.close()
				return
			}
			if f.DropProb > 0 && nw.float() < f.DropProb {
				pc.close()
				return
			}
			if f.StallProb > 0 && nw.float() < f.StallProb {
				if !pc.sleep(nw.durationN(f.StallMax)) {
					return
				}
			}
			if !f.Hold {
				break
			}
			select {
			case <-changed:
			case <-pc.done:
				return
			}
		}
		if _, err := dst.Write(c.data); err != nil {
			pc.close()
			return
		}
	}
	// The source closed its side: pass that on, and end the connection
	// (accord never half-closes a peer connection for long).
	pc.close()
}

// sleep waits d or until the connection closes; it reports whether the
// connection is still open.
func (pc *proxyConn) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-pc.done:
		return false
	}
}
