//go:build unix

package ports

import (
	"net"
	"os"
	"syscall"
)

// socket is a bound TCP socket that never listens.
type socket struct{ f *os.File }

// bindSocket binds a new TCP socket to at (port 0: the kernel's choice) and returns it with
// its port. exclusive binds without SO_REUSEADDR, so that the bind fails when anything at all
// uses the port (a listener, another reservation, a lingering connection); SO_REUSEADDR is set
// after the bind in any case, which lets a listener (which sets it too) bind the port while
// this socket holds it.
func bindSocket(at *net.TCPAddr, exclusive bool) (*socket, int, error) {
	family := syscall.AF_INET
	var sa syscall.Sockaddr
	if v4 := at.IP.To4(); v4 != nil {
		a := &syscall.SockaddrInet4{Port: at.Port}
		copy(a.Addr[:], v4)
		sa = a
	} else {
		family = syscall.AF_INET6
		a := &syscall.SockaddrInet6{Port: at.Port}
		copy(a.Addr[:], at.IP.To16())
		sa = a
	}
	syscall.ForkLock.RLock()
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, 0, os.NewSyscallError("socket", err)
	}
	fail := func(op string, err error) (*socket, int, error) {
		_ = syscall.Close(fd)
		return nil, 0, os.NewSyscallError(op, err)
	}
	if !exclusive {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
			return fail("setsockopt", err)
		}
	}
	if err := syscall.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	if exclusive {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
			return fail("setsockopt", err)
		}
	}
	got, err := syscall.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	port := 0
	switch a := got.(type) {
	case *syscall.SockaddrInet4:
		port = a.Port
	case *syscall.SockaddrInet6:
		port = a.Port
	}
	return &socket{f: os.NewFile(uintptr(fd), "reserved-port")}, port, nil
}

func (s *socket) close() error { return s.f.Close() }
