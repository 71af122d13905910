package devstack

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/kbase/cts/test/ports"
)

// Option adjusts how a component of the stack starts (StartS3, StartMongo, StartKafkaIn).
type Option func(*startOptions)

type startOptions struct {
	addr string
}

// At makes the component listen on addr ("127.0.0.1:PORT") when that address is free, and
// on a free loopback port outside the kernel's ephemeral range otherwise. A restarted stack uses it to keep its addresses, so
// clients configured for the previous run (and agents still running) find it again.
func At(addr string) Option { return func(o *startOptions) { o.addr = addr } }

func startOpts(opts []Option) startOptions {
	var o startOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// listenPreferred listens on addr when it is set and free, else on a free loopback port
// outside the kernel's ephemeral range: the stack keeps its addresses across restarts, and no
// outgoing connection can take such a port while the stack is stopped.
func listenPreferred(addr string) (net.Listener, error) {
	if addr != "" {
		if ln, err := net.Listen("tcp", addr); err == nil {
			return ln, nil
		}
	}
	return ports.ListenStable("127.0.0.1")
}

// reservePreferred is listenPreferred for a server that binds the address itself (in a child
// process): it holds the address until the server listens on it and for as long as the
// server runs, restarts included.
func reservePreferred(addr string) (*ports.Reservation, error) {
	if addr != "" {
		if r, err := ports.ReserveAt(addr); err == nil {
			return r, nil
		}
	}
	return ports.ReserveStable("127.0.0.1")
}

// addrs are the addresses a stack listened on, kept in <Dir>/addrs.json so a restart on the
// same Dir listens on them again.
type addrs struct {
	S3       string `json:"s3,omitempty"`
	Mongo    string `json:"mongo,omitempty"`
	Kafka    string `json:"kafka,omitempty"`
	Registry string `json:"registry,omitempty"`
}

const addrsFile = "addrs.json"

// readAddrs returns the addresses saved in dir; none when the file does not exist.
func readAddrs(dir string) (addrs, error) {
	var a addrs
	b, err := os.ReadFile(filepath.Join(dir, addrsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return a, nil
	}
	if err != nil {
		return a, err
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("%s: %w (remove the folder to start afresh)", filepath.Join(dir, addrsFile), err)
	}
	return a, nil
}

// writeFileAtomic writes b to path through a temporary file and a rename.
func writeFileAtomic(path string, b []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func writeAddrs(dir string, a addrs) error {
	b, _ := json.MarshalIndent(a, "", "  ")
	return writeFileAtomic(filepath.Join(dir, addrsFile), append(b, '\n'), 0o600)
}
