package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/client"
)

func TestProgressLines(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		ps   []client.ContainerProgress
		want []string
	}{
		{"none", nil, nil},
		{"download and upload", []client.ContainerProgress{
			{Container: 0, Phase: "download", BytesDone: 12_897_485, BytesTotal: 40 << 20, FilesDone: 3, FilesTotal: 4},
			{Container: 1, Phase: "download", BytesDone: 512, BytesTotal: 512, FilesDone: 1, FilesTotal: 1},
			{Container: 2, Phase: "upload", BytesDone: 1536, BytesTotal: 3 << 30, FilesDone: 0, FilesTotal: 2},
			{Container: 3, Phase: "upload", BytesDone: 0, BytesTotal: 0, FilesDone: 0, FilesTotal: 0},
		}, []string{
			"  transfers:",
			"    container 0  downloading  12.3 MiB / 40.0 MiB  30%  3/4 files",
			"    container 1  downloaded  512 B / 512 B  100%  1/1 files",
			"    container 2  uploading  1.5 KiB / 3.0 GiB  0%  0/2 files",
			"    container 3  uploaded  0 B / 0 B  -  0/0 files",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := progressLines(tc.ps, time.Now()); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
	t.Run("many containers are summed up", func(t *testing.T) {
		t.Parallel()
		ps := make([]client.ContainerProgress, 20)
		for i := range ps {
			ps[i] = client.ContainerProgress{Container: i, Phase: "download", BytesDone: 1 << 20, BytesTotal: 2 << 20, FilesDone: 0, FilesTotal: 1}
		}
		ps[0].BytesDone, ps[0].FilesDone = 2<<20, 1
		got := progressLines(ps, time.Now())
		if want := "  transfers: 20 containers, 19 in progress, 21.0 MiB / 40.0 MiB  52%"; len(got) != 1 || got[0] != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
}

func TestLiveViewShowsProgress(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	v := &liveView{w: &b, id: "j1", start: time.Now(), progress: []client.ContainerProgress{
		{Container: 0, Phase: "download", BytesDone: 1 << 20, BytesTotal: 4 << 20, FilesDone: 1, FilesTotal: 4}}}
	st := &client.JobStatus{State: "download_submitted", Transitions: []client.Transition{{State: "created", Time: client.Timestamp{Time: time.Unix(1700000000, 0)}}}}
	v.draw(st, nil)
	want := "job j1  starting, downloading inputs (download_submitted)  (0s)\n  created                      2023-11-14T22:13:20Z\n" +
		"  transfers:\n    container 0  downloading  1.0 MiB / 4.0 MiB  25%  1/4 files\n"
	if b.String() != want {
		t.Errorf("frame:\n%q\nwant\n%q", b.String(), want)
	}
}

// TestRatesAndETA: the rate comes from the bytes between two reports over the time between
// them (smoothed); the ETA is the bytes left at that rate, counted down from the last report.
func TestRatesAndETA(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	var r rateKeeper
	report := func(done int64, at time.Time) client.ContainerProgress {
		p := client.ContainerProgress{Container: 0, Phase: "download", BytesDone: done, BytesTotal: 100 << 20, FilesDone: 0, FilesTotal: 1, Updated: client.Timestamp{Time: at}}
		r.observe(p)
		return p
	}
	report(0, t0)
	p := report(10<<20, t0.Add(2*time.Second)) // 5 MiB/s
	got := progressLines([]client.ContainerProgress{p}, t0.Add(2*time.Second), &r)
	want := "    container 0  downloading  10.0 MiB / 100.0 MiB  10%  5.0 MiB/s  ETA 18s  0/1 files"
	if len(got) != 2 || got[1] != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	// Four seconds later, no new report: the ETA has gone down by four seconds.
	if got := progressLines([]client.ContainerProgress{p}, t0.Add(6*time.Second), &r); !strings.HasSuffix(got[1], "5.0 MiB/s  ETA 14s  0/1 files") {
		t.Fatalf("later: %q", got[1])
	}
	p = report(40<<20, t0.Add(4*time.Second)) // 15 MiB/s now: smoothed to 10 MiB/s
	if got := progressLines([]client.ContainerProgress{p}, t0.Add(4*time.Second), &r); !strings.HasSuffix(got[1], "10.0 MiB/s  ETA 6s  0/1 files") {
		t.Fatalf("smoothed: %q", got[1])
	}
	// A new phase starts the measure afresh: no rate until two reports.
	up := client.ContainerProgress{Container: 0, Phase: "upload", BytesDone: 1, BytesTotal: 10, FilesTotal: 1, Updated: client.Timestamp{Time: t0.Add(5 * time.Second)}}
	r.observe(up)
	if got := progressLines([]client.ContainerProgress{up}, t0.Add(5*time.Second), &r); strings.Contains(got[1], "/s") {
		t.Fatalf("upload: %q", got[1])
	}
}

// TestLiveViewTicks: between polls the live view redraws every tick, so the elapsed time
// moves; it names job_submitted "running"; after stop it never draws again.
func TestLiveViewTicks(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var frames []string
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		frames = append(frames, string(p))
		return len(p), nil
	})
	start := time.Now()
	var clock struct {
		sync.Mutex
		now time.Time
	}
	clock.now = start
	v := &liveView{w: w, id: "j1", start: start, now: func() time.Time { clock.Lock(); defer clock.Unlock(); return clock.now }}
	v.update(&client.JobStatus{State: "job_submitted"}, nil, nil)
	stop := v.tick(10 * time.Millisecond)
	clock.Lock()
	clock.now = start.Add(7 * time.Second)
	clock.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		last := frames[len(frames)-1]
		mu.Unlock()
		if strings.Contains(last, "job j1  running (job_submitted)  (7s)") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no redraw with the new elapsed time; last frame %q", last)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	mu.Lock()
	n := len(frames)
	mu.Unlock()
	v.update(&client.JobStatus{State: "complete"}, nil, nil)
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(frames) != n {
		t.Fatalf("drawn after stop: %q", frames[n:])
	}
	if !strings.Contains(frames[0], "running (job_submitted)") {
		t.Fatalf("first frame %q", frames[0])
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestMistypedFlag: a wrong flag gives the error and the usage line, not the whole help.
func TestMistypedFlag(t *testing.T) {
	t.Parallel()
	r := runCLI(t, map[string]string{}, "list", "--colour")
	r.want(t, exitUsage)
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if len(lines) != 2 || lines[0] != "cts list: flag provided but not defined: -colour" ||
		!strings.HasPrefix(lines[1], "usage: cts list ") || !strings.HasSuffix(lines[1], "(cts list -h lists the flags)") {
		t.Fatalf("stderr:\n%s", r.stderr)
	}
	r = runCLI(t, map[string]string{}, "--ulr", "x", "list")
	r.want(t, exitUsage)
	if strings.TrimSpace(r.stderr) != "cts: flag provided but not defined: -ulr (cts help lists the commands and global flags)" {
		t.Fatalf("stderr:\n%s", r.stderr)
	}
}

// progressService serves a job that is running for 4 polls of its status, then complete, and
// its progress: the same for two polls, then changed. Without progress (older), the route
// answers 404.
func progressService(t *testing.T, withProgress bool) (url string, progressCalls func() int) {
	t.Helper()
	var mu sync.Mutex
	polls, calls := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/jobs/j1/status", "/jobs/j1":
			if r.URL.Path == "/jobs/j1/status" {
				polls++
			}
			ts := []map[string]any{{"state": "created", "time": time.Unix(1700000000, 0).UTC()}}
			state := "download_submitted"
			if polls > 4 {
				state = "complete"
				ts = append(ts, map[string]any{"state": state, "time": time.Unix(1700000009, 0).UTC()})
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"id": "j1", "user": "u", "state": state, "transition_times": ts})
		case "/jobs/j1/progress":
			calls++
			if !withProgress {
				w.WriteHeader(http.StatusNotFound)
				_, _ = fmt.Fprint(w, `{"error":{"httpcode":404,"httpstatus":"Not Found","appcode":40000,"apperror":"Not Found","message":"Not Found"}}`)
				return
			}
			done := 10
			if polls > 2 {
				done = 40
			}
			_, _ = fmt.Fprintf(w, `{"containers":[{"container":0,"phase":"download","bytes_done":%d,"bytes_total":40,`+
				`"files_done":%d,"files_total":4,"updated":"2024-10-24T22:35:4%dZ"}]}`, done, done/10, polls)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() int { mu.Lock(); defer mu.Unlock(); return calls }
}

func TestWaitJSONProgress(t *testing.T) {
	t.Parallel()
	t.Run("printed when it changed", func(t *testing.T) {
		t.Parallel()
		url, _ := progressService(t, true)
		r := runCLI(t, map[string]string{"CTS_URL": url, "CTS_TOKEN": "T"}, "wait", "--json", "--no-containers", "j1")
		r.want(t, exitOK)
		want := `{"job_id":"j1","state":"created","time":"2023-11-14T22:13:20Z"}` + "\n" +
			`{"job_id":"j1","container":0,"progress":{"phase":"download","bytes_done":10,"bytes_total":40,"files_done":1,"files_total":4},"time":"2024-10-24T22:35:41Z"}` + "\n" +
			`{"job_id":"j1","container":0,"progress":{"phase":"download","bytes_done":40,"bytes_total":40,"files_done":4,"files_total":4},"time":"2024-10-24T22:35:43Z"}` + "\n" +
			`{"job_id":"j1","state":"complete","time":"2023-11-14T22:13:29Z"}` + "\n"
		if r.stdout != want {
			t.Errorf("stdout:\n%s\nwant\n%s", r.stdout, want)
		}
	})
	t.Run("an older service without the route", func(t *testing.T) {
		t.Parallel()
		url, calls := progressService(t, false)
		r := runCLI(t, map[string]string{"CTS_URL": url, "CTS_TOKEN": "T"}, "wait", "--json", "--no-containers", "j1")
		r.want(t, exitOK)
		want := `{"job_id":"j1","state":"created","time":"2023-11-14T22:13:20Z"}` + "\n" +
			`{"job_id":"j1","state":"complete","time":"2023-11-14T22:13:29Z"}` + "\n"
		if r.stdout != want || r.stderr != "" {
			t.Errorf("stdout:\n%s\nwant\n%s\nstderr %q", r.stdout, want, r.stderr)
		}
		if n := calls(); n != 1 {
			t.Errorf("the missing route was asked %d times, want once", n)
		}
	})
}
