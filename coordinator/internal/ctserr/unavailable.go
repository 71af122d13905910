package ctserr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
)

// The dependencies an UnavailableError names, as users read them.
const (
	DependencyS3      = "S3"
	DependencyMongoDB = "MongoDB"
	DependencyKafka   = "Kafka"
	DependencyAuth    = "KBase auth2"
)

// UnavailableError is a dependency of the service (S3, MongoDB, Kafka, KBase auth2) that did
// not serve a request: it refused or dropped the connection, did not answer within its
// deadline, or answered with a server error. It is nobody's fault that the caller can fix, so
// Write renders it as 503 Service Unavailable (with Retry-After) whose message names the
// dependency and what went wrong in a few words, never its address: the cause, which may name
// internal hosts, stays in Err for the log.
type UnavailableError struct {
	// Dependency is one of the Dependency constants.
	Dependency string
	// Reason says what went wrong ("did not answer in time"); Unavailable derives it.
	Reason string
	// Err is the cause.
	Err error
}

// Unavailable wraps err as dependency dep's outage, with a reason derived from err.
func Unavailable(dep string, err error) *UnavailableError {
	return &UnavailableError{Dependency: dep, Reason: reason(err), Err: err}
}

// Error names the dependency, the reason and the cause (for logs).
func (e *UnavailableError) Error() string {
	return fmt.Sprintf("%s is unavailable (%s): %v", e.Dependency, e.Reason, e.Err)
}

// Unwrap returns the cause.
func (e *UnavailableError) Unwrap() error { return e.Err }

// Message is what the user reads.
func (e *UnavailableError) Message() string {
	return fmt.Sprintf("The service cannot reach %s: it %s. Please try again in a minute; if this persists, tell the service's administrators.",
		e.Dependency, e.Reason)
}

// RetryAfterSeconds is the Retry-After of a 503.
const RetryAfterSeconds = 10

// reason describes err in a few words for a user: no host names, no addresses.
func reason(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "failed"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "did not answer in time"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused the connection"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.EPIPE):
		return "closed the connection"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "is not reachable on the network"
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return "could not be found on the network"
	}
	return "answered with an error"
}
