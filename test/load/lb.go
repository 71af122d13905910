package load

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"
)

// Balancer is a small round-robin reverse proxy in front of the coordinator replicas, as an
// operator's load balancer would be: plain HTTP, server-sent events and websockets (the
// agents' sessions) pass through, and a replica that refuses connections is skipped for a
// moment (a request that could not reach it goes to the next one), so a dead replica's
// agents reconnect to a live one.
type Balancer struct {
	URL string

	backends []string // host:port
	next     atomic.Uint64
	mu       sync.Mutex
	downTill []time.Time
	tr       *http.Transport
	srv      *http.Server
	ln       net.Listener
}

// NewBalancer starts a balancer on a free loopback port in front of backends (host:port).
func NewBalancer(backends []string) (*Balancer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &Balancer{URL: "http://" + ln.Addr().String(), backends: backends, downTill: make([]time.Time, len(backends)), ln: ln,
		// No connection is reused: every request dials its replica, so a request never goes
		// down a connection to a replica that died since (it would fail after being sent,
		// and a POST cannot be sent again); a dead replica refuses the dial instead, and the
		// request goes to the next one.
		tr: &http.Transport{DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext, DisableKeepAlives: true}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "backend"
			pr.SetXForwarded()
		},
		Transport:     b,
		FlushInterval: -1, // server-sent events and live logs stream through
		ErrorLog:      nil,
	}
	b.srv = &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = b.srv.Serve(ln) }()
	return b, nil
}

// RoundTrip sends the request to the next replica that accepts a connection.
func (b *Balancer) RoundTrip(req *http.Request) (*http.Response, error) {
	n := len(b.backends)
	start := int(b.next.Add(1))
	body := req.Body
	var lastErr error
	for i := range n {
		k := (start + i) % n
		b.mu.Lock()
		down := time.Now().Before(b.downTill[k])
		b.mu.Unlock()
		if down && i < n-1 {
			continue
		}
		r := req.Clone(req.Context())
		r.URL.Host, r.Host = b.backends[k], b.backends[k]
		if body != nil {
			r.Body = io.NopCloser(body) // a failed dial reads nothing: the next try sends it all
		}
		resp, err := b.tr.RoundTrip(r)
		if err == nil {
			return resp, nil
		}
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "dial" {
			return nil, err
		}
		b.mu.Lock()
		b.downTill[k] = time.Now().Add(2 * time.Second)
		b.mu.Unlock()
		lastErr = err
	}
	if body != nil {
		_ = body.Close()
	}
	return nil, lastErr
}

// Close stops the balancer and drops its connections.
func (b *Balancer) Close() {
	_ = b.srv.Close()
	b.tr.CloseIdleConnections()
}
