//go:build !unix

package ports

import "net"

// socket stands for a reservation where bound-but-not-listening sockets are not available:
// the port is only checked, not held (the race this package removes on unix remains).
type socket struct{}

func bindSocket(at *net.TCPAddr, _ bool) (*socket, int, error) {
	ln, err := net.ListenTCP("tcp", at)
	if err != nil {
		return nil, 0, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return &socket{}, port, ln.Close()
}

func (s *socket) close() error { return nil }
