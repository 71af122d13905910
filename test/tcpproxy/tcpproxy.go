// Package tcpproxy is a TCP proxy for tests that makes a dependency hang or refuse
// connections on demand, so that what the coordinator does during an outage can be tested
// against the real protocols (MongoDB wire, S3 HTTP, Kafka, auth2 HTTP):
//
//   - Pass forwards every connection to the target;
//   - Hang accepts connections and holds them without forwarding a byte, and freezes the
//     connections already open (a pooled keep-alive connection hangs too);
//   - Refuse closes the port: new connections are refused (ECONNREFUSED) and open ones are
//     reset. The port stays the proxy's meanwhile (see package ports): nothing else can
//     take it before the proxy listens on it again.
//
// It is test infrastructure: it never runs in production.
package tcpproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/kbase/cts/test/ports"
)

// Mode is what the proxy does with connections.
type Mode int

// The modes.
const (
	Pass Mode = iota
	Hang
	Refuse
)

// String names the mode.
func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Hang:
		return "hang"
	case Refuse:
		return "refuse"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// Proxy is a switchable TCP proxy. It is safe for concurrent use.
type Proxy struct {
	target string
	addr   string
	port   *ports.Reservation

	mu      sync.Mutex
	mode    Mode
	changed chan struct{} // closed and replaced on every mode change
	ln      net.Listener
	conns   map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// New listens on a free loopback port and forwards to target ("host:port").
func New(target string) (*Proxy, error) {
	port, err := ports.Reserve("127.0.0.1")
	if err != nil {
		return nil, fmt.Errorf("tcpproxy: %w", err)
	}
	ln, err := port.Listen()
	if err != nil {
		_ = port.Close()
		return nil, fmt.Errorf("tcpproxy: %w", err)
	}
	p := &Proxy{target: target, addr: port.Addr(), port: port, changed: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	return p, nil
}

// Addr is the proxy's "host:port"; it stays the same across mode changes.
func (p *Proxy) Addr() string { return p.addr }

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// Set switches the mode. Leaving Refuse listens on the same address again.
func (p *Proxy) Set(m Mode) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("tcpproxy: closed")
	}
	if m == p.mode {
		return nil
	}
	if m == Refuse {
		_ = p.ln.Close()
		p.ln = nil
		for c := range p.conns {
			reset(c)
		}
	}
	if p.mode == Refuse {
		ln, err := p.port.Listen()
		if err != nil {
			return fmt.Errorf("tcpproxy: listen again on %s: %w", p.addr, err)
		}
		p.serveLocked(ln)
	}
	p.mode = m
	close(p.changed)
	p.changed = make(chan struct{})
	return nil
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	if p.ln != nil {
		_ = p.ln.Close()
	}
	for c := range p.conns {
		_ = c.Close()
	}
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	p.wg.Wait()
	return p.port.Close()
}

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.serveLocked(ln)
}

func (p *Proxy) serveLocked(ln net.Listener) {
	p.ln = ln
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !p.track(c) {
				_ = c.Close()
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.handle(c)
			}()
		}
	}()
}

// track records an open connection; false when the proxy is closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

// gate blocks while the mode is Hang; it returns false when the connection must end (the
// proxy closed or refuses).
func (p *Proxy) gate() bool {
	for {
		p.mu.Lock()
		m, ch, closed := p.mode, p.changed, p.closed
		p.mu.Unlock()
		switch {
		case closed || m == Refuse:
			return false
		case m == Pass:
			return true
		}
		<-ch
	}
}

func (p *Proxy) handle(client net.Conn) {
	defer p.untrack(client)
	if !p.gate() {
		reset(client)
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		reset(client)
		return
	}
	if !p.track(server) {
		_ = server.Close()
		return
	}
	defer p.untrack(server)
	done := make(chan struct{}, 2)
	// pipe copies src to dst, holding every write while the proxy hangs. An EOF is passed on
	// as a half-close; any other end closes both connections.
	pipe := func(dst, src net.Conn) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if !p.gate() {
					reset(client)
					reset(server)
					return
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					_ = client.Close()
					_ = server.Close()
					return
				}
			}
			if err != nil {
				if tc, ok := dst.(*net.TCPConn); ok && errors.Is(err, io.EOF) {
					_ = tc.CloseWrite()
					return
				}
				_ = client.Close()
				_ = server.Close()
				return
			}
		}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
	<-done
}

// reset closes c with a TCP RST rather than a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
