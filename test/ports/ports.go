// Package ports hands out loopback TCP ports without the race of "listen on port 0, close,
// let someone bind the port later": between the close and the bind, any outgoing connection
// or listen on port 0 anywhere on the machine may be given that port, and the later bind fails
// with "address in use".
//
// A Reservation holds a port with a socket that is bound but never listens: connections to
// the port are refused (as to a service that is down), the kernel never gives the port to an
// outgoing connection or to a listen on port 0, and another program's bind fails, while a
// listener started on the address with net.Listen, in this process or in a child (which sets
// SO_REUSEADDR, as Go always does for listeners), binds it. The owner of an address holds its
// Reservation for as long as it owns the address; listeners come and go on it (a restarted
// server, a proxy switched off and on) without the port ever being free.
//
// Addresses a program keeps across its own restarts (a dev site's) are chosen outside the
// kernel's ephemeral port range (ReserveStable, ListenStable): while the program is stopped
// and holds nothing, no outgoing connection and no listen on port 0 can take them; only a
// program that asks for that very port can.
//
// It is test and dev-site infrastructure (devstack, devmode, the test harnesses), never a
// production path.
package ports

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// stableTries bounds the random ports ReserveStable and ListenStable try.
const stableTries = 64

// defaultEphemeral is the ephemeral range where the kernel does not say (IANA's).
var defaultEphemeral = [2]int{49152, 65535}

// lowestStable is the lowest port a stable address is chosen from: below it sit the
// well-known and most registered services' ports.
const lowestStable = 20000

// EphemeralRange returns the kernel's ephemeral port range, from which it picks the local
// port of outgoing connections and of listens on port 0: on Linux
// /proc/sys/net/ipv4/ip_local_port_range, elsewhere IANA's 49152–65535.
func EphemeralRange() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultEphemeral[0], defaultEphemeral[1]
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return defaultEphemeral[0], defaultEphemeral[1]
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || lo < 1 || hi > 65535 || lo > hi {
		return defaultEphemeral[0], defaultEphemeral[1]
	}
	return lo, hi
}

// stableCandidates returns up to n random ports outside the ephemeral range: above it when
// there is room there (rarely used by services), else below it, never under lowestStable.
func stableCandidates(n int) []int {
	lo, hi := EphemeralRange()
	var ranges [][2]int
	if hi < 65535 {
		ranges = append(ranges, [2]int{hi + 1, 65535})
	}
	if lo-1 >= lowestStable {
		ranges = append(ranges, [2]int{lowestStable, lo - 1})
	}
	var out []int
	for _, r := range ranges {
		size := r[1] - r[0] + 1
		for _, i := range rand.Perm(size) {
			if len(out) == n {
				return out
			}
			out = append(out, r[0]+i)
		}
	}
	return out
}

// ErrNoStablePort is returned when no port outside the ephemeral range could be had.
var ErrNoStablePort = errors.New("no free port outside the kernel's ephemeral port range")

// Reservation holds a TCP port on a loopback (or other local) address; see the package
// documentation. It is safe for concurrent use.
type Reservation struct {
	addr *net.TCPAddr

	mu sync.Mutex
	s  *socket // nil once closed
}

// Reserve reserves a port the kernel chooses (from its ephemeral range) on host, an IP
// address ("127.0.0.1"; "" and "localhost" mean 127.0.0.1).
func Reserve(host string) (*Reservation, error) {
	ip, err := hostIP(host)
	if err != nil {
		return nil, err
	}
	return reserve(&net.TCPAddr{IP: ip}, true)
}

// ReserveStable reserves a free port outside the kernel's ephemeral range on host (see
// Reserve): for an address a program keeps across its restarts.
func ReserveStable(host string) (*Reservation, error) {
	ip, err := hostIP(host)
	if err != nil {
		return nil, err
	}
	for _, p := range stableCandidates(stableTries) {
		if r, err := reserve(&net.TCPAddr{IP: ip, Port: p}, true); err == nil {
			return r, nil
		}
	}
	return nil, fmt.Errorf("reserve a port on %s: %w", ip, ErrNoStablePort)
}

// ReserveAt reserves the address addr ("127.0.0.1:PORT"): an address the caller owns, such
// as the one a restarted program had. It fails, with an error that matches
// syscall.EADDRINUSE, when something listens there. Unlike ReserveStable it does not mind
// connections of an earlier listener that linger (TIME_WAIT), so a restarted program takes its
// address back at once.
func ReserveAt(addr string) (*Reservation, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("reserve %s: %w", addr, err)
	}
	ip, err := hostIP(host)
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("reserve %s: bad port %q", addr, port)
	}
	return reserve(&net.TCPAddr{IP: ip, Port: n}, false)
}

func reserve(at *net.TCPAddr, exclusive bool) (*Reservation, error) {
	s, port, err := bindSocket(at, exclusive)
	if err != nil {
		return nil, fmt.Errorf("reserve %s: %w", at, err)
	}
	return &Reservation{addr: &net.TCPAddr{IP: at.IP, Port: port}, s: s}, nil
}

func hostIP(host string) (net.IP, error) {
	if host == "" || host == "localhost" {
		return net.IPv4(127, 0, 0, 1).To4(), nil
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, fmt.Errorf("reserve a port: %q is not an IP address", host)
	}
	if v4 := ip.To4(); v4 != nil {
		return v4, nil
	}
	return ip, nil
}

// Addr is the reserved "host:port".
func (r *Reservation) Addr() string { return r.addr.String() }

// Port is the reserved port.
func (r *Reservation) Port() int { return r.addr.Port }

// Listen listens on the reserved address (net.Listen). The reservation stays: when the
// listener closes, the port is still held.
func (r *Reservation) Listen() (net.Listener, error) {
	r.mu.Lock()
	closed := r.s == nil
	r.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("listen on %s: the reservation is closed", r.Addr())
	}
	return net.Listen("tcp", r.Addr())
}

// Close releases the port (a listener on it keeps it until it closes). It is idempotent.
func (r *Reservation) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.s == nil {
		return nil
	}
	err := r.s.close()
	r.s = nil
	return err
}

// ListenStable listens on host (see Reserve) at a free port outside the kernel's ephemeral
// range, bound directly: for a server whose address is kept across restarts.
func ListenStable(host string) (net.Listener, error) {
	ip, err := hostIP(host)
	if err != nil {
		return nil, err
	}
	for _, p := range stableCandidates(stableTries) {
		if ln, err := net.Listen("tcp", (&net.TCPAddr{IP: ip, Port: p}).String()); err == nil {
			return ln, nil
		}
	}
	return nil, fmt.Errorf("listen on %s: %w", ip, ErrNoStablePort)
}
