package ctserr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"
)

var fixed = time.Date(2024, 10, 24, 22, 35, 40, 123456789, time.UTC)

const reqID = "172367b0-0099-4903-9a19-d12ff101b2da"

func TestRenderGolden(t *testing.T) {
	tests := []struct {
		name         string
		err          error
		showInternal bool
		status       int
		want         string
	}{
		{
			name:   "app error 404",
			err:    New(CodeNoSuchJob, "No job with ID '%s' exists", "abc"),
			status: 404,
			want: `{"error":{"httpcode":404,"httpstatus":"Not Found","time":"2024-10-24T22:35:40.123456Z",` +
				`"request_id":"` + reqID + `","appcode":40040,"apperror":"No such job",` +
				`"message":"No job with ID 'abc' exists"}}`,
		},
		{
			name:   "wrapped app error keeps code, empty message omitted",
			err:    fmt.Errorf("get job: %w", &Error{Code: CodeUnauthorized, Err: errors.New("secret cause")}),
			status: 403,
			want: `{"error":{"httpcode":403,"httpstatus":"Forbidden","time":"2024-10-24T22:35:40.123456Z",` +
				`"request_id":"` + reqID + `","appcode":20000,"apperror":"Unauthorized"}}`,
		},
		{
			name: "validation error with details, no message",
			err: Validation(
				ValidationDetail{Type: "missing", Loc: []any{"body", "cluster"}, Msg: "Field required",
					Input: map[string]any{"image": "x"}},
				ValidationDetail{Type: "greater_than_equal", Loc: []any{"body", "params", "num", 0}, Msg: "Input should be greater than or equal to 1",
					Input: 0, Ctx: map[string]any{"ge": 1}},
			),
			status: 400,
			want: `{"error":{"httpcode":400,"httpstatus":"Bad Request","time":"2024-10-24T22:35:40.123456Z",` +
				`"request_id":"` + reqID + `","appcode":30010,"apperror":"Request validation failed",` +
				`"request_validation_detail":[` +
				`{"type":"missing","loc":["body","cluster"],"msg":"Field required","input":{"image":"x"}},` +
				`{"type":"greater_than_equal","loc":["body","params","num",0],"msg":"Input should be greater than or equal to 1","input":0,"ctx":{"ge":1}}]}}`,
		},
		{
			name:   "unknown error hidden",
			err:    fmt.Errorf("mongo: %w", errors.New("connection refused")),
			status: 500,
			want: `{"error":{"httpcode":500,"httpstatus":"Internal Server Error","time":"2024-10-24T22:35:40.123456Z",` +
				`"request_id":"` + reqID + `","message":"An unexpected error occurred"}}`,
		},
		{
			name:         "unknown error shown",
			err:          fmt.Errorf("mongo: %w", errors.New("connection refused")),
			showInternal: true,
			status:       500,
			want: `{"error":{"httpcode":500,"httpstatus":"Internal Server Error","time":"2024-10-24T22:35:40.123456Z",` +
				`"request_id":"` + reqID + `","message":"mongo: connection refused"}}`,
		},
		{
			name:   "unknown app code is an unexpected error",
			err:    &Error{Code: 12345, Message: "internal detail"},
			status: 500,
			want: `{"error":{"httpcode":500,"httpstatus":"Internal Server Error","time":"2024-10-24T22:35:40.123456Z",` +
				`"request_id":"` + reqID + `","message":"An unexpected error occurred"}}`,
		},
		{
			name:   "status error without appcode",
			err:    &StatusError{Status: http.StatusMethodNotAllowed, Message: "Method Not Allowed"},
			status: 405,
			want: `{"error":{"httpcode":405,"httpstatus":"Method Not Allowed","time":"2024-10-24T22:35:40.123456Z",` +
				`"request_id":"` + reqID + `","message":"Method Not Allowed"}}`,
		},
		{
			name:   "unknown route",
			err:    New(CodeNotFound, "Not Found"),
			status: 404,
			want: `{"error":{"httpcode":404,"httpstatus":"Not Found","time":"2024-10-24T22:35:40.123456Z",` +
				`"request_id":"` + reqID + `","appcode":40000,"apperror":"Not Found","message":"Not Found"}}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, got := Render(tc.err, reqID, tc.showInternal, fixed)
			if status != tc.status {
				t.Errorf("status %d, want %d", status, tc.status)
			}
			if string(got) != tc.want {
				t.Errorf("body\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestRenderUnmarshalableInputNulled(t *testing.T) {
	err := Validation(ValidationDetail{Type: "x", Loc: []any{"body"}, Msg: "bad", Input: make(chan int)})
	_, got := Render(err, reqID, false, fixed)
	want := `{"error":{"httpcode":400,"httpstatus":"Bad Request","time":"2024-10-24T22:35:40.123456Z",` +
		`"request_id":"` + reqID + `","appcode":30010,"apperror":"Request validation failed",` +
		`"request_validation_detail":[{"type":"x","loc":["body"],"msg":"bad","input":null}]}}`
	if string(got) != want {
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
	if err.Validation[0].Input == nil {
		t.Error("Render modified the caller's error")
	}
}

var timeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$`)

func TestWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, New(CodeInvalidToken, "KBase auth server reported token is invalid."), reqID, false)
	if rec.Code != 401 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var got struct {
		Error map[string]any `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	e := got.Error
	if e["httpcode"] != float64(401) || e["httpstatus"] != "Unauthorized" || e["appcode"] != float64(10020) ||
		e["apperror"] != "Invalid token" || e["request_id"] != reqID ||
		e["message"] != "KBase auth server reported token is invalid." {
		t.Errorf("body %v", e)
	}
	ts, _ := e["time"].(string)
	if !timeRE.MatchString(ts) {
		t.Errorf("time %q", ts)
	}
	if tm, err := time.Parse(time.RFC3339Nano, ts); err != nil || time.Since(tm).Abs() > time.Minute {
		t.Errorf("time %q: %v", ts, err)
	}
	if _, ok := e["request_validation_detail"]; ok {
		t.Error("request_validation_detail present on a non-validation error")
	}
}

func TestStatusText(t *testing.T) {
	tests := map[int]string{
		400: "Bad Request",
		401: "Unauthorized",
		403: "Forbidden",
		404: "Not Found",
		405: "Method Not Allowed",
		409: "Conflict",
		413: "Request Entity Too Large",
		414: "Request-URI Too Long",
		418: "I'm a Teapot",
		422: "Unprocessable Entity",
		500: "Internal Server Error",
		502: "Bad Gateway",
		503: "Service Unavailable",
		599: "",
	}
	for code, want := range tests {
		if got := StatusText(code); got != want {
			t.Errorf("StatusText(%d) = %q, want %q", code, got, want)
		}
	}
}

func TestFormatTime(t *testing.T) {
	pst := time.FixedZone("PST", -8*3600)
	tests := []struct {
		name string
		in   time.Time
		want string
	}{
		{"whole second", time.Date(2024, 10, 24, 22, 35, 40, 0, time.UTC), "2024-10-24T22:35:40Z"},
		{"milliseconds padded to micro", time.Date(2024, 10, 24, 22, 35, 40, 123000000, time.UTC), "2024-10-24T22:35:40.123000Z"},
		{"microseconds", time.Date(2024, 10, 24, 22, 35, 40, 123456000, time.UTC), "2024-10-24T22:35:40.123456Z"},
		{"nanoseconds truncated", time.Date(2024, 10, 24, 22, 35, 40, 999999999, time.UTC), "2024-10-24T22:35:40.999999Z"},
		{"sub-microsecond only is whole", time.Date(2024, 10, 24, 22, 35, 40, 999, time.UTC), "2024-10-24T22:35:40Z"},
		{"converted to UTC", time.Date(2024, 10, 24, 14, 35, 40, 1000, pst), "2024-10-24T22:35:40.000001Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := FormatTime(tc.in); got != tc.want {
				t.Errorf("FormatTime = %q, want %q", got, tc.want)
			}
		})
	}
}

func BenchmarkRender(b *testing.B) {
	err := fmt.Errorf("wrap: %w", New(CodeNoSuchJob, "No job with ID '%s' exists", "abc"))
	for b.Loop() {
		Render(err, reqID, false, fixed)
	}
}
