package ctserr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
)

func TestUnavailable(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 27017},
		Err: &net.DNSError{}}
	refused.Err = fmt.Errorf("connect: %w", syscall.ECONNREFUSED)
	for _, tc := range []struct {
		err    error
		reason string
	}{
		{fmt.Errorf("head x: %w", context.DeadlineExceeded), "did not answer in time"},
		{refused, "refused the connection"},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), "closed the connection"},
		{&net.DNSError{Name: "mongo.internal", Err: "no such host"}, "could not be found on the network"},
		{errors.New("500 Internal Server Error"), "answered with an error"},
	} {
		ue := Unavailable(DependencyMongoDB, fmt.Errorf("list jobs: %w", tc.err))
		if ue.Reason != tc.reason {
			t.Errorf("%v: reason %q, want %q", tc.err, ue.Reason, tc.reason)
		}
		rec := httptest.NewRecorder()
		Write(rec, fmt.Errorf("get job: %w", ue), reqID, true)
		body := rec.Body.String()
		if rec.Code != 503 || rec.Header().Get("Retry-After") != "10" || strings.Contains(body, "appcode") ||
			!strings.Contains(body, `"httpstatus":"Service Unavailable"`) ||
			!strings.Contains(body, "The service cannot reach MongoDB: it "+tc.reason+".") {
			t.Errorf("%v: %d %v %s", tc.err, rec.Code, rec.Header(), body)
		}
		// The cause names internal hosts: never in the answer, not even for admins.
		if strings.Contains(body, "10.0.0.7") || strings.Contains(body, "mongo.internal") {
			t.Errorf("the answer leaks the cause: %s", body)
		}
	}
}
