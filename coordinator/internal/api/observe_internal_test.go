package api

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRequestLogFields checks that the API's log lines, and every line logged with a
// request's context through LogHandler, carry request_id (and job_id on job routes).
func TestRequestLogFields(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := New(Config{Version: "1"}, nil, Jobs{}, nil, nil, nil, log)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/jobs/job-7/status", nil))
	if rec.Code != 401 {
		t.Fatalf("status %d", rec.Code)
	}
	var line map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &line); err != nil {
		t.Fatalf("%v: %s", err, buf.Bytes())
	}
	var body struct {
		Error struct {
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if line["msg"] != "request" || line["request_id"] != body.Error.RequestID || body.Error.RequestID == "" ||
		line["job_id"] != "job-7" || line["route"] != "/jobs/{job_id}/status" || line["status"] != 401.0 {
		t.Fatalf("log line %v (error request_id %q)", line, body.Error.RequestID)
	}

	t.Run("other packages' lines", func(t *testing.T) {
		buf.Reset()
		l := slog.New(LogHandler(LogHandler(slog.NewJSONHandler(&buf, nil)))).With("component", "jobs")
		ctx := context.WithValue(context.Background(), requestIDKey, "rid-1")
		l.InfoContext(ctx, "job created", "job_id", "j1")
		l.InfoContext(context.Background(), "background")
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 2 || strings.Count(lines[0], `"request_id":"rid-1"`) != 1 || !strings.Contains(lines[0], `"job_id":"j1"`) ||
			strings.Contains(lines[1], "request_id") {
			t.Fatalf("lines %q", lines)
		}
		if RequestID(ctx) != "rid-1" || RequestID(context.Background()) != "" {
			t.Fatal("RequestID")
		}
	})
}
