package ctserr

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// UnexpectedMessage is the message of a 500 whose cause is hidden from the caller.
const UnexpectedMessage = "An unexpected error occurred"

// StatusError is an HTTP failure that has no CTS application code, such as 405 Method Not
// Allowed: Write renders it with its status and message and without appcode / apperror, as
// the Python service does for Starlette HTTPExceptions other than 404.
type StatusError struct {
	Status  int
	Message string
}

// Error returns the message, or the status text when there is none.
func (e *StatusError) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return StatusText(e.Status)
}

// body is the CTS error JSON. Field order follows the Python service.
type body struct {
	HTTPCode   int                `json:"httpcode"`
	HTTPStatus string             `json:"httpstatus"`
	Time       string             `json:"time"`
	RequestID  string             `json:"request_id"`
	AppCode    Code               `json:"appcode,omitempty"`
	AppError   string             `json:"apperror,omitempty"`
	Message    string             `json:"message,omitempty"`
	Validation []ValidationDetail `json:"request_validation_detail,omitempty"`
}

// Render returns the HTTP status and the CTS error JSON for err, stamped with now. See Write.
func Render(err error, requestID string, showInternal bool, now time.Time) (int, []byte) {
	b := body{Time: FormatTime(now), RequestID: requestID}
	var ce *Error
	var se *StatusError
	var ue *UnavailableError
	switch {
	case errors.As(err, &ce) && known(ce.Code):
		b.HTTPCode = ce.Code.Status()
		b.AppCode = ce.Code
		b.AppError = ce.Code.Text()
		b.Message = ce.Message
		b.Validation = ce.Validation
	case errors.As(err, &se) && se.Status >= 400 && se.Status <= 599:
		b.HTTPCode = se.Status
		b.Message = se.Message
	case errors.As(err, &ue):
		b.HTTPCode = http.StatusServiceUnavailable
		b.Message = ue.Message()
	default:
		b.HTTPCode = http.StatusInternalServerError
		b.Message = UnexpectedMessage
		if showInternal && err != nil {
			b.Message = err.Error()
		}
	}
	b.HTTPStatus = StatusText(b.HTTPCode)
	out, merr := json.Marshal(map[string]body{"error": b})
	if merr != nil {
		// Only a validation detail's input or ctx can fail to marshal (a value the request
		// decoder produced cannot, but a hand-built detail might): drop them rather than lose
		// the error. Loc holds only strings and ints.
		vd := make([]ValidationDetail, len(b.Validation))
		for i, d := range b.Validation {
			vd[i] = ValidationDetail{Type: d.Type, Loc: d.Loc, Msg: d.Msg}
		}
		b.Validation = vd
		out, _ = json.Marshal(map[string]body{"error": b})
	}
	return b.HTTPCode, out
}

// Write renders any error as the CTS error JSON and writes it with its
// status:
//   - an *Error (found with errors.As, so wrapping is fine) with a known code gives that code's
//     status, appcode and apperror, its Message as message when non-empty, and its Validation
//     as request_validation_detail for request validation errors;
//   - a *StatusError gives its status and message, without appcode;
//   - an *UnavailableError gives 503 without appcode, a message naming the dependency, and
//     a Retry-After header;
//   - anything else is a 500 without appcode whose message is "An unexpected error occurred",
//     or err.Error() when showInternal is set (the Python service shows it to full admins).
//
// time is the current time in FormatTime's form and request_id is requestID.
func Write(w http.ResponseWriter, err error, requestID string, showInternal bool) {
	status, out := Render(err, requestID, showInternal, time.Now())
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	if status == http.StatusServiceUnavailable {
		h.Set("Retry-After", strconv.Itoa(RetryAfterSeconds))
	}
	w.WriteHeader(status)
	_, _ = w.Write(out)
}

func known(c Code) bool {
	_, ok := codes[c]
	return ok
}

// pythonStatusText holds the reason phrases of Python 3.12's http.client.responses (the CTS
// runs 3.12) that differ from Go's http.StatusText.
var pythonStatusText = map[int]string{
	http.StatusRequestURITooLong: "Request-URI Too Long",
	http.StatusTeapot:            "I'm a Teapot",
}

// StatusText is the reason phrase the Python service puts in "httpstatus": Python 3.12's
// http.client.responses[code], e.g. "Bad Request", "Unauthorized", "Not Found". It is empty
// for a code Python does not know.
func StatusText(code int) string {
	if s, ok := pythonStatusText[code]; ok {
		return s
	}
	return http.StatusText(code)
}

// FormatTime formats t as the CTS API formats timestamps (pydantic v2): ISO 8601 in UTC with
// a "Z", with microseconds only when they are non-zero, e.g. "2024-10-24T22:35:40Z" or
// "2024-10-24T22:35:40.123000Z". Sub-microsecond digits are truncated (Python datetimes hold
// microseconds).
func FormatTime(t time.Time) string {
	t = t.UTC().Truncate(time.Microsecond)
	if t.Nanosecond() == 0 {
		return t.Format("2006-01-02T15:04:05Z")
	}
	return t.Format("2006-01-02T15:04:05.000000Z")
}
