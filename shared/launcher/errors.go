package launcher

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kbase/cts/shared/launcher/internal/launcherpb"
)

// Sentinel errors. A plugin returns errors wrapping them; the SDK carries them over gRPC as a
// status code plus a google.rpc.ErrorInfo reason, and the host gets errors for which errors.Is
// holds again, carrying the plugin's message.
var (
	// ErrNotFound: the backend does not know the job.
	ErrNotFound = errors.New("not found")
	// ErrInvalidConfig: Configure got a configuration it cannot use.
	ErrInvalidConfig = errors.New("invalid launcher config")
	// ErrInvalidRequest: a request is malformed (bad job ID, handle, container count).
	ErrInvalidRequest = errors.New("invalid launcher request")
	// ErrNotConfigured: a call other than Info came before a successful Configure.
	ErrNotConfigured = errors.New("launcher not configured")
	// ErrConflict: the request contradicts the job's state (same key with other containers,
	// Cleanup of a running job).
	ErrConflict = errors.New("launcher conflict")
	// ErrUnavailable: the backend (scheduler, daemon) cannot be reached now; retry later.
	ErrUnavailable = errors.New("launcher backend unavailable")
	// ErrPluginExited: the plugin process is gone; the host must start a new one. Only the
	// host side returns it.
	ErrPluginExited = errors.New("launcher plugin process exited")
	// ErrIncompatible: the plugin implements another APIVersion. Only Start returns it.
	ErrIncompatible = errors.New("incompatible launcher plugin")
)

// errorDomain is the ErrorInfo domain that marks a status as sent by our SDK on purpose (as
// opposed to a transport failure with the same code).
const errorDomain = "launcher.cts.kbase.us"

// wireErrors is the sentinel ↔ (gRPC code, ErrorInfo reason) table, used in both directions.
var wireErrors = []struct {
	err    error
	code   codes.Code
	reason string
}{
	{ErrNotFound, codes.NotFound, "NOT_FOUND"},
	{ErrInvalidConfig, codes.InvalidArgument, "INVALID_CONFIG"},
	{ErrInvalidRequest, codes.InvalidArgument, "INVALID_REQUEST"},
	{ErrNotConfigured, codes.FailedPrecondition, "NOT_CONFIGURED"},
	{ErrConflict, codes.FailedPrecondition, "CONFLICT"},
	{ErrUnavailable, codes.Unavailable, "UNAVAILABLE"},
	{errors.ErrUnsupported, codes.Unimplemented, "UNSUPPORTED"},
	{context.Canceled, codes.Canceled, "CANCELED"},
	{context.DeadlineExceeded, codes.DeadlineExceeded, "DEADLINE_EXCEEDED"},
}

// remoteError is an error that came from the plugin: its message is the plugin's, and it
// unwraps to the matching sentinel (or to nothing).
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// classify finds the code and reason for err on the plugin side.
func classify(err error) (codes.Code, string) {
	for _, w := range wireErrors {
		if errors.Is(err, w.err) {
			return w.code, w.reason
		}
	}
	return codes.Unknown, reasonUnknown
}

// reasonUnknown marks an error that matches no sentinel.
const reasonUnknown = "UNKNOWN"

// toStatus turns a plugin-side error into a gRPC status error. It is the plugin-side half of
// the single translation between sentinels and the wire.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	code, reason := classify(err)
	st := status.New(code, err.Error())
	// Every status the SDK sends carries ErrorInfo in our domain, even for errors without a
	// sentinel: the host treats a status without it as a transport failure.
	if withInfo, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain}); derr == nil {
		st = withInfo
	}
	return st.Err()
}

// toWireError is toStatus for a per-item error inside a batched response.
func toWireError(err error) *launcherpb.Error {
	if err == nil {
		return nil
	}
	code, reason := classify(err)
	return &launcherpb.Error{Code: int32(code), Reason: reason, Message: err.Error()}
}

// sentinelFor finds the sentinel for a reason, or for a code when the reason is unknown.
func sentinelFor(code codes.Code, reason string) error {
	for _, w := range wireErrors {
		if reason != "" && w.reason == reason {
			return w.err
		}
	}
	if reason != "" {
		return nil
	}
	for _, w := range wireErrors {
		if w.code == code {
			return w.err
		}
	}
	return nil
}

// fromWireError is the host-side inverse of toWireError.
func fromWireError(e *launcherpb.Error) error {
	if e == nil {
		return nil
	}
	return &remoteError{msg: e.GetMessage(), sentinel: sentinelFor(codes.Code(e.GetCode()), e.GetReason())}
}

// sdkReason returns the ErrorInfo reason of a status sent deliberately by a plugin through
// this SDK, and whether there was one.
func sdkReason(st *status.Status) (string, bool) {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
			return info.GetReason(), true
		}
	}
	return "", false
}

// fromStatus is the host-side inverse of toStatus for a status the plugin sent.
func fromStatus(st *status.Status) error {
	reason, _ := sdkReason(st)
	return &remoteError{msg: st.Message(), sentinel: sentinelFor(st.Code(), reason)}
}

// errorf wraps err with a lower-case operation prefix.
func errorf(op string, err error) error {
	return fmt.Errorf("launcher %s: %w", op, err)
}
