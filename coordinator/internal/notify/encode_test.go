package notify_test

import (
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/notify"
	"github.com/kbase/cts/shared/job"
)

// The expected bytes were produced by Python 3's json.dumps on the same dict (job_id, state,
// time = datetime(..., tzinfo=timezone.utc).isoformat(), trans_id), as the CTS does.
func TestEncodeGolden(t *testing.T) {
	est := time.FixedZone("EST", -5*3600)
	cases := []struct {
		name  string
		jobID string
		tr    jobs.Transition
		want  string
	}{
		{"reference test bytes", "id1",
			jobs.Transition{State: job.Created, Time: time.Date(2024, 3, 24, 12, 0, 0, 0, time.UTC), TransID: "trans_id1"},
			`{"job_id": "id1", "state": "created", "time": "2024-03-24T12:00:00+00:00", "trans_id": "trans_id1"}`},
		{"milliseconds", "id1",
			jobs.Transition{State: job.DownloadSubmitted, Time: time.Date(2025, 4, 2, 12, 0, 0, 345_000_000, time.UTC), TransID: "t"},
			`{"job_id": "id1", "state": "download_submitted", "time": "2025-04-02T12:00:00.345000+00:00", "trans_id": "t"}`},
		{"one microsecond", "j",
			jobs.Transition{State: job.Error, Time: time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC), TransID: "t"},
			`{"job_id": "j", "state": "error", "time": "0001-01-01T00:00:00.000001+00:00", "trans_id": "t"}`},
		{"nanoseconds below a microsecond are dropped", "j",
			jobs.Transition{State: job.Complete, Time: time.Date(2024, 1, 2, 3, 4, 5, 999, time.UTC), TransID: "t"},
			`{"job_id": "j", "state": "complete", "time": "2024-01-02T03:04:05+00:00", "trans_id": "t"}`},
		{"other zone rendered in UTC", "j",
			jobs.Transition{State: job.Canceled, Time: time.Date(2024, 3, 24, 7, 0, 0, 0, est), TransID: "t"},
			`{"job_id": "j", "state": "canceled", "time": "2024-03-24T12:00:00+00:00", "trans_id": "t"}`},
		{"escapes as ensure_ascii", "a\"b\\c/<>&\n\r\t\b\f\x01\x1f\x7f é€😀\u2028",
			jobs.Transition{State: "x", Time: time.Date(2025, 4, 2, 12, 0, 0, 345_000_000, time.UTC)},
			`{"job_id": "a\"b\\c/<>&\n\r\t\b\f\u0001\u001f\u007f \u00e9\u20ac\ud83d\ude00\u2028", "state": "x", "time": "2025-04-02T12:00:00.345000+00:00", "trans_id": ""}`},
		{"uuid ids", "2b1f5c0e-3d3c-4c4e-9d8a-1f0e2d3c4b5a",
			jobs.Transition{State: job.JobSubmitted, Time: time.Date(2024, 12, 31, 23, 59, 59, 999_000_000, time.UTC), TransID: "5e0c7a52-2c8e-4f31-8f0a-6d1b9c2e7f44"},
			`{"job_id": "2b1f5c0e-3d3c-4c4e-9d8a-1f0e2d3c4b5a", "state": "job_submitted", "time": "2024-12-31T23:59:59.999000+00:00", "trans_id": "5e0c7a52-2c8e-4f31-8f0a-6d1b9c2e7f44"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := string(notify.Encode(c.jobID, c.tr)); got != c.want {
				t.Fatalf("Encode =\n%s\nwant\n%s", got, c.want)
			}
		})
	}
}

// FuzzEncode checks that every message is ASCII JSON that decodes back to its fields.
func FuzzEncode(f *testing.F) {
	f.Add("id1", "created", "trans_id1", int64(1711281600000000000))
	f.Add("a\"b\\c\x00\x7f", "é😀\u2028", "\xff\xfe", int64(-1))
	f.Fuzz(func(t *testing.T, jobID, state, transID string, nanos int64) {
		tm := time.Unix(0, nanos)
		b := notify.Encode(jobID, jobs.Transition{State: job.State(state), Time: tm, TransID: transID})
		for _, c := range b {
			if c < 0x20 || c > 0x7e {
				t.Fatalf("non-printable-ASCII byte %#x in %q", c, b)
			}
		}
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("not JSON: %v: %s", err, b)
		}
		valid := func(s string) string {
			if utf8.ValidString(s) {
				return s
			}
			return string([]rune(s)) // invalid bytes become U+FFFD, as encoded
		}
		if m["job_id"] != valid(jobID) || m["state"] != valid(state) || m["trans_id"] != valid(transID) {
			t.Fatalf("decoded %q from %q/%q/%q", m, jobID, state, transID)
		}
		if m["time"] != notify.PyISOTime(tm) {
			t.Fatalf("time %q, want %q", m["time"], notify.PyISOTime(tm))
		}
		back, err := time.Parse("2006-01-02T15:04:05.999999-07:00", m["time"])
		if err != nil {
			t.Fatalf("time %q does not parse: %v", m["time"], err)
		}
		if !back.Equal(tm.Truncate(time.Microsecond)) && tm.Year() >= 1 && tm.Year() <= 9999 {
			t.Fatalf("time %q is not %v", m["time"], tm)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	tr := jobs.Transition{State: job.DownloadSubmitted, Time: time.Date(2025, 4, 2, 12, 0, 0, 345_000_000, time.UTC),
		TransID: "5e0c7a52-2c8e-4f31-8f0a-6d1b9c2e7f44"}
	for b.Loop() {
		notify.Encode("2b1f5c0e-3d3c-4c4e-9d8a-1f0e2d3c4b5a", tr)
	}
}
