package session

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/protocol"
)

// TestJournalSurvivesAProcessRestart simulates an agent process that dies with an event in
// flight: a new session for the same attempt and journal resends it, and the coordinator
// applies every sequence number exactly once.
func TestJournalSurvivesAProcessRestart(t *testing.T) {
	cases := []struct {
		name string
		// second is what the coordinator does with seq 2 on the first process's connection.
		second action
		// wantResent says whether the restarted process must send seq 2 again.
		wantResent bool
	}{
		{name: "applied, acknowledgement lost", second: applyHold, wantResent: false},
		{name: "never applied", second: hold, wantResent: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeCoord(t)
			f.set(func() {
				f.onEvent = func(n int, ev protocol.Event) action {
					if n == 1 && ev.Seq == 2 {
						return tc.second
					}
					return ack
				}
			})
			cfg := testConfig(f)
			cfg.JournalPath = filepath.Join(t.TempDir(), "events.journal")
			first, _, err := Dial(tctx(t), cfg)
			if err != nil {
				t.Fatal(err)
			}
			report(t, first, job.JobSubmitting)
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			err = first.Report(ctx, protocol.Event{State: job.JobSubmitted})
			cancel()
			if err == nil {
				t.Fatal("Report of seq 2 returned nil although the ack never came")
			}
			first.Close() // the process dies: only the journal remains

			second, _, err := Dial(tctx(t), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(second.Close)
			if rec := second.Recovered(); len(rec) != 1 || rec[0].Seq != 2 || rec[0].State != job.JobSubmitted {
				t.Fatalf("recovered %+v, want seq 2 job_submitted", rec)
			}
			if err := second.Flush(tctx(t)); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			report(t, second, job.UploadSubmitting)
			applied, recv, _ := f.snapshot()
			if !equalSeqs(seqs(applied), []int64{1, 2, 3}) {
				t.Errorf("applied seqs %v, want [1 2 3] once each", seqs(applied))
			}
			if applied[1].State != job.JobSubmitted {
				t.Errorf("seq 2 applied as %s", applied[1].State)
			}
			resent := 0
			for _, r := range recv {
				if r.ev.Seq == 2 && r.conn > 1 {
					resent++
				}
			}
			if (resent > 0) != tc.wantResent {
				t.Errorf("seq 2 sent %d times by the restarted process, want resent=%v", resent, tc.wantResent)
			}
			second.Close()
			if b, err := os.ReadFile(cfg.JournalPath); err != nil || len(b) != 0 {
				t.Errorf("journal after every ack = %q, %v; want empty", b, err)
			}
		})
	}
}

func TestJournalIgnoresATornLine(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "j")
	content := "E {\"seq\":1,\"state\":\"job_submitting\",\"time\":\"2026-01-01T00:00:00Z\"}\n" +
		"E {\"seq\":2,\"state\":\"job_submitted\",\"time\":\"2026-01-01T00:00:01Z\"}\n" +
		"A 1\n" +
		"E {\"seq\":3,\"sta" // a crash mid-append
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	j, evs, err := openJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	if len(evs) != 1 || evs[0].Seq != 2 {
		t.Fatalf("pending %+v, want only seq 2", evs)
	}
	if err := j.append(protocol.Event{Seq: 3, State: job.UploadSubmitting}); err != nil {
		t.Fatal(err)
	}
	j2, evs, err := openJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.close()
	if !equalSeqs(seqs(evs), []int64{2, 3}) {
		t.Errorf("after reopen pending %v, want [2 3]", seqs(evs))
	}
}
