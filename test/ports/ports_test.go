package ports

import (
	"errors"
	"net"
	"syscall"
	"testing"
)

func wantRefused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err == nil {
		c.Close()
		t.Fatalf("dial %s: connected, want refused", addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: %v, want connection refused", addr, err)
	}
}

func wantServes(t *testing.T, ln net.Listener) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial %s: %v", ln.Addr(), err)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("accept: %v", err)
	}
}

// TestReservationHoldsThePort: a reserved port refuses connections, lets listeners come and
// go on it, and is taken by nobody else meanwhile.
func TestReservationHoldsThePort(t *testing.T) {
	r, err := Reserve("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	wantRefused(t, r.Addr())
	for round := range 2 {
		ln, err := r.Listen()
		if err != nil {
			t.Fatalf("round %d: listen on the reservation: %v", round, err)
		}
		wantServes(t, ln)
		if _, err := ReserveAt(r.Addr()); !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("round %d: ReserveAt of a listened address = %v, want EADDRINUSE", round, err)
		}
		ln.Close()
		wantRefused(t, r.Addr())
	}
	// Nothing the kernel hands out gets the port: listens on port 0 and outgoing connections.
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range 2000 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, l)
		if l.Addr().(*net.TCPAddr).Port == r.Port() {
			t.Fatalf("a listen on port 0 got the reserved port %d", r.Port())
		}
	}
	for range 2000 {
		c, err := net.Dial("tcp", lns[0].Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		port := c.LocalAddr().(*net.TCPAddr).Port
		c.Close()
		if port == r.Port() {
			t.Fatalf("an outgoing connection got the reserved port %d", r.Port())
		}
	}
	// An exclusive bind (what another program's plain bind is) fails.
	if s, _, err := bindSocket(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: r.Port()}, true); err == nil {
		s.close()
		t.Fatal("an exclusive bind of the reserved port succeeded")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := r.Listen(); err == nil {
		t.Fatal("Listen on a closed reservation succeeded")
	}
	// Released: the address can be taken again.
	r2, err := ReserveAt(r.Addr())
	if err != nil {
		t.Fatalf("ReserveAt after Close: %v", err)
	}
	r2.Close()
}

func TestStablePortsAreOutsideTheEphemeralRange(t *testing.T) {
	lo, hi := EphemeralRange()
	if lo < 1 || hi > 65535 || lo > hi {
		t.Fatalf("EphemeralRange = %d-%d", lo, hi)
	}
	outside := func(p int) bool { return p < lo || p > hi }
	for range 5 {
		r, err := ReserveStable("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if !outside(r.Port()) || r.Port() < lowestStable {
			t.Errorf("ReserveStable port %d, ephemeral range %d-%d", r.Port(), lo, hi)
		}
		wantRefused(t, r.Addr())
		ln, err := r.Listen()
		if err != nil {
			t.Fatal(err)
		}
		wantServes(t, ln)
		ln.Close()
		r.Close()

		ln, err = ListenStable("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if p := ln.Addr().(*net.TCPAddr).Port; !outside(p) {
			t.Errorf("ListenStable port %d, ephemeral range %d-%d", p, lo, hi)
		}
		wantServes(t, ln)
		ln.Close()
	}
}

func TestBadAddresses(t *testing.T) {
	for _, addr := range []string{"127.0.0.1", "127.0.0.1:x", "127.0.0.1:70000", "example.com:80"} {
		if r, err := ReserveAt(addr); err == nil {
			r.Close()
			t.Errorf("ReserveAt(%q) succeeded", addr)
		}
	}
	if _, err := Reserve("example.com"); err == nil {
		t.Error("Reserve of a host name succeeded")
	}
	r, err := Reserve("")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if host, _, _ := net.SplitHostPort(r.Addr()); host != "127.0.0.1" {
		t.Errorf("Reserve(\"\") = %s, want 127.0.0.1", r.Addr())
	}
}
