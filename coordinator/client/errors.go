package client

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// AppCode is a CTS application error code.
type AppCode int

// The CTS application codes a client typically branches on.
const (
	CodeNoToken             AppCode = 10010
	CodeInvalidToken        AppCode = 10020
	CodeUnauthorized        AppCode = 20000
	CodeIllegalParameter    AppCode = 30001
	CodeRequestValidation   AppCode = 30010
	CodeInvalidJobState     AppCode = 30300
	CodeNotFound            AppCode = 40000
	CodeNoSuchImage         AppCode = 40030
	CodeNoSuchJob           AppCode = 40040
	CodeNoSuchSubJob        AppCode = 40050
	CodeNoSuchRefdata       AppCode = 40060
	CodeNoLogs              AppCode = 40070
	CodeResourceUnavailable AppCode = 60000
)

// ValidationDetail is one problem of a request the service refused to validate (appcode 30010),
// in pydantic's shape.
type ValidationDetail struct {
	Type  string `json:"type"`
	Loc   []any  `json:"loc"`
	Msg   string `json:"msg"`
	Input any    `json:"input,omitempty"`
	Ctx   any    `json:"ctx,omitempty"`
}

// Location renders Loc as "body.input_files.0".
func (d ValidationDetail) Location() string {
	parts := make([]string, len(d.Loc))
	for i, l := range d.Loc {
		parts[i] = fmt.Sprint(l)
	}
	return strings.Join(parts, ".")
}

// APIError is an error answer of the service: the CTS error JSON, or, from
// something in front of the service that does not speak it, the status and the raw body.
type APIError struct {
	StatusCode int
	HTTPStatus string
	// AppCode and AppError are 0 and "" for errors without an application code (a 405, a 500).
	AppCode    AppCode
	AppError   string
	Message    string
	RequestID  string
	Time       string
	Validation []ValidationDetail
	// Raw holds the body when it was not the CTS error JSON.
	Raw string
}

// Error renders the error on one line: "No such image (40030): <message> [HTTP 404, request
// <request_id>]"; the request ID lets the service's operators find the request in its logs.
func (e *APIError) Error() string {
	var b strings.Builder
	if e.AppCode != 0 {
		fmt.Fprintf(&b, "%s (%d)", e.AppError, e.AppCode)
	} else {
		b.WriteString(e.HTTPStatus)
	}
	msg := e.Message
	if msg == "" && len(e.Validation) > 0 {
		var ds []string
		for _, d := range e.Validation {
			ds = append(ds, d.Location()+": "+d.Msg)
		}
		msg = strings.Join(ds, "; ")
	}
	if msg == "" && e.Raw != "" {
		msg = e.Raw
	}
	if msg != "" {
		b.WriteString(": " + msg)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " [HTTP %d, request %s]", e.StatusCode, e.RequestID)
	} else {
		fmt.Fprintf(&b, " [HTTP %d]", e.StatusCode)
	}
	return b.String()
}

// parseAPIError decodes an error answer.
func parseAPIError(status int, body []byte) *APIError {
	e := &APIError{StatusCode: status, HTTPStatus: http.StatusText(status)}
	var doc struct {
		Error *struct {
			HTTPCode   int                `json:"httpcode"`
			HTTPStatus string             `json:"httpstatus"`
			Time       string             `json:"time"`
			RequestID  string             `json:"request_id"`
			AppCode    AppCode            `json:"appcode"`
			AppError   string             `json:"apperror"`
			Message    string             `json:"message"`
			Validation []ValidationDetail `json:"request_validation_detail"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.Error == nil {
		raw := strings.TrimSpace(string(body))
		if len(raw) > 500 {
			raw = raw[:500] + "..."
		}
		e.Raw = raw
		return e
	}
	d := doc.Error
	if d.HTTPStatus != "" {
		e.HTTPStatus = d.HTTPStatus
	}
	e.AppCode, e.AppError, e.Message = d.AppCode, d.AppError, d.Message
	e.RequestID, e.Time, e.Validation = d.RequestID, d.Time, d.Validation
	return e
}
