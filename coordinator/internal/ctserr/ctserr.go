// Package ctserr owns the CTS error model: the application error codes of the CTS API,
// the typed Error that carries one, and its JSON rendering. Domain packages
// return *Error (or wrap one with %w) for failures that are the caller's fault; the API layer
// turns any error into the CTS error JSON exactly once, with errors.As.
package ctserr

import (
	"fmt"
	"net/http"
)

// Code is a CTS application error code.
type Code int

// The CTS application error codes, with their HTTP status in Status.
const (
	CodeAuthenticationFailed Code = 10000
	CodeNoToken              Code = 10010
	CodeInvalidToken         Code = 10020
	CodeInvalidAuthHeader    Code = 10030
	CodeInvalidUserName      Code = 10040
	CodeUnauthorized         Code = 20000
	CodeS3PathInaccessible   Code = 20010
	CodeS3BucketInaccessible Code = 20020
	CodeMissingParameter     Code = 30000
	CodeIllegalParameter     Code = 30001
	CodeRequestValidation    Code = 30010
	CodeIllegalS3Path        Code = 30020
	CodeChecksumMismatch     Code = 30030
	CodeImageNameParse       Code = 30040
	CodeImageFetch           Code = 30050
	CodeNoEntrypoint         Code = 30060
	CodeClientLifetime       Code = 30200
	CodeInvalidJobState      Code = 30300
	CodeInvalidRefdataState  Code = 30400
	CodeNotFound             Code = 40000
	CodeS3PathNotFound       Code = 40010
	CodeS3BucketNotFound     Code = 40020
	CodeNoSuchImage          Code = 40030
	CodeNoSuchJob            Code = 40040
	CodeNoSuchSubJob         Code = 40050
	CodeNoSuchRefdata        Code = 40060
	CodeNoLogs               Code = 40070
	CodeImageTagExists       Code = 50000
	CodeImageDigestExists    Code = 50010
	CodeRefdataExists        Code = 50100
	CodeResourceUnavailable  Code = 60000
	CodeJobFlowInactive      Code = 60010
	CodeJobFlowUnavailable   Code = 60020
	CodeUnsupportedOperation Code = 100000
)

var codes = map[Code]struct {
	text   string
	status int
}{
	CodeAuthenticationFailed: {"Authentication failed", http.StatusUnauthorized},
	CodeNoToken:              {"No authentication token", http.StatusUnauthorized},
	CodeInvalidToken:         {"Invalid token", http.StatusUnauthorized},
	CodeInvalidAuthHeader:    {"Invalid authentication header", http.StatusUnauthorized},
	CodeInvalidUserName:      {"Invalid user name", http.StatusBadRequest},
	CodeUnauthorized:         {"Unauthorized", http.StatusForbidden},
	CodeS3PathInaccessible:   {"S3 path inaccessible", http.StatusForbidden},
	CodeS3BucketInaccessible: {"S3 bucket inaccessible", http.StatusForbidden},
	CodeMissingParameter:     {"Missing input parameter", http.StatusBadRequest},
	CodeIllegalParameter:     {"Illegal input parameter", http.StatusBadRequest},
	CodeRequestValidation:    {"Request validation failed", http.StatusBadRequest},
	CodeIllegalS3Path:        {"Illegal S3 path", http.StatusBadRequest},
	CodeChecksumMismatch:     {"Checksum mismatch", http.StatusBadRequest},
	CodeImageNameParse:       {"Image name parse error", http.StatusBadRequest},
	CodeImageFetch:           {"Image fetch error", http.StatusBadRequest},
	CodeNoEntrypoint:         {"Image has no entrypoint", http.StatusBadRequest},
	CodeClientLifetime:       {"Client lifetime too short", http.StatusBadRequest},
	CodeInvalidJobState:      {"Invalid job state", http.StatusBadRequest},
	CodeInvalidRefdataState:  {"Invalid reference data state", http.StatusBadRequest},
	CodeNotFound:             {"Not Found", http.StatusNotFound},
	CodeS3PathNotFound:       {"S3 path not found", http.StatusNotFound},
	CodeS3BucketNotFound:     {"S3 bucket not found", http.StatusNotFound},
	CodeNoSuchImage:          {"No such image", http.StatusNotFound},
	CodeNoSuchJob:            {"No such job", http.StatusNotFound},
	CodeNoSuchSubJob:         {"No such sub job", http.StatusNotFound},
	CodeNoSuchRefdata:        {"No such reference data", http.StatusNotFound},
	CodeNoLogs:               {"No logs available", http.StatusNotFound},
	CodeImageTagExists:       {"Image tag exists", http.StatusBadRequest},
	CodeImageDigestExists:    {"Image digest exists", http.StatusBadRequest},
	CodeRefdataExists:        {"Refdata already exists", http.StatusBadRequest},
	CodeResourceUnavailable:  {"Resource unavailable", http.StatusBadRequest},
	CodeJobFlowInactive:      {"Job flow inactive", http.StatusBadRequest},
	CodeJobFlowUnavailable:   {"Job flow unavailable", http.StatusBadRequest},
	CodeUnsupportedOperation: {"Unsupported operation", http.StatusBadRequest},
}

// Text is the exact CTS "apperror" string of the code.
func (c Code) Text() string { return codes[c].text }

// Status is the HTTP status the code is returned with.
func (c Code) Status() int {
	if s, ok := codes[c]; ok {
		return s.status
	}
	return http.StatusInternalServerError
}

// ValidationDetail is one request validation problem, shaped like a pydantic error so
// existing clients can read it: loc is the path to the bad value (e.g. ["body",
// "input_files", 0]), typ a short machine name ("missing", "string_pattern_mismatch", ...).
type ValidationDetail struct {
	Type  string         `json:"type"`
	Loc   []any          `json:"loc"`
	Msg   string         `json:"msg"`
	Input any            `json:"input"`
	Ctx   map[string]any `json:"ctx,omitempty"`
}

// Error is a failure the API reports with a CTS application code.
type Error struct {
	Code    Code
	Message string
	// Validation is set for CodeRequestValidation.
	Validation []ValidationDetail
	// Err is an optional underlying cause, for errors.Is/As; never shown to users.
	Err error
}

// New returns an *Error with a formatted message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Validation returns a request validation error (400, app code 30010).
func Validation(details ...ValidationDetail) *Error {
	return &Error{Code: CodeRequestValidation, Validation: details}
}

func (e *Error) Error() string {
	if e.Message != "" {
		return e.Message
	}
	if len(e.Validation) > 0 {
		return fmt.Sprintf("%s: %s", e.Code.Text(), e.Validation[0].Msg)
	}
	return e.Code.Text()
}

func (e *Error) Unwrap() error { return e.Err }
