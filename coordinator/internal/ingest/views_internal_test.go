package ingest

import (
	"fmt"
	"testing"

	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
)

// The views hold at most maxViewSubJobs sub-jobs, whatever the jobs folded; the job just read
// is kept, and the count is what the views hold.
func TestViewsBounded(t *testing.T) {
	v := newViews()
	subsOf := func(id string, n int) []jobs.SubJob {
		out := make([]jobs.SubJob, n)
		for i := range out {
			out[i] = jobs.SubJob{JobID: id, SubID: i, State: job.JobSubmitting,
				Transitions: []jobs.Transition{{State: job.DownloadSubmitted}, {State: job.JobSubmitting}}}
		}
		return out
	}
	held := func() int {
		n := 0
		for _, s := range v.jobs {
			n += len(s)
		}
		return n
	}
	per := maxViewSubJobs / 3
	for i := range 7 {
		id := fmt.Sprintf("j%d", i)
		v.put(id, subsOf(id, per))
		v.setState(id, job.JobSubmitting)
		if v.subJobs != held() || v.subJobs > maxViewSubJobs || len(v.jobs[id]) != per || v.state(id) != job.JobSubmitting {
			t.Fatalf("after job %d: %d counted, %d held (bound %d), this job's view %d", i, v.subJobs, held(), maxViewSubJobs, len(v.jobs[id]))
		}
		if len(v.states) > len(v.jobs) {
			t.Fatalf("%d states kept for %d views", len(v.states), len(v.jobs))
		}
	}
	// Read again, the same job replaces its view; dropped, it is gone from the count.
	v.put("j6", subsOf("j6", per))
	v.drop("j6")
	if v.subJobs != held() || v.jobs["j6"] != nil || v.state("j6") != "" {
		t.Fatalf("after the drop: %d counted, %d held", v.subJobs, held())
	}
	// A view is never moved back: a shorter history does not replace a longer one.
	v.put("k", subsOf("k", 2))
	v.update(&jobs.SubJob{JobID: "k", SubID: 1, State: job.DownloadSubmitted, Transitions: []jobs.Transition{{State: job.DownloadSubmitted}}})
	if v.jobs["k"][1].State != job.JobSubmitting {
		t.Fatalf("an older copy replaced the view: %s", v.jobs["k"][1].State)
	}
	if n, ok := v.nextBlocker("k", job.JobSubmitting, 0); !ok || n != 0 {
		t.Fatalf("nextBlocker = %d, %v; want container 0 (it has not reached job_submitted)", n, ok)
	}
	if _, ok := v.nextBlocker("k", job.JobSubmitting, 2); ok {
		t.Fatal("nextBlocker past the end found one")
	}
}

// A session keeps of its job what its later events check (ID, launch attempt, output folder),
// not the job's input, which lists every container's files: thousands of sessions keep one.
func TestKnownJobKeepsLittle(t *testing.T) {
	j := &jobs.Job{ID: "j1", Launch: &jobs.Launch{Site: "s", Handle: "h", Attempt: 2, Retries: []string{"r"}}}
	j.Input.OutputDir = "b/out/"
	j.Input.Params.Declobber = true
	for i := range 100 {
		j.Input.InputFiles = append(j.Input.InputFiles, jobinput.InputFile{File: fmt.Sprintf("b/in/%d", i)})
	}
	k := &KnownJob{}
	k.keep(j)
	got := k.job
	if got.ID != "j1" || currentLaunch(got) != 2 || got.Input.OutputDir != "b/out/" || !got.Input.Params.Declobber {
		t.Fatalf("kept %+v: the ID, launch attempt or output folder is missing", got)
	}
	if len(got.Input.InputFiles) != 0 || len(got.Launch.Retries) != 0 {
		t.Fatalf("kept the input files (%d) or the launch's history", len(got.Input.InputFiles))
	}
	if d1, _ := OutputFolder(j, 3); func() bool { d2, _ := OutputFolder(got, 3); return d1.String() != d2.String() }() {
		t.Fatal("the kept job gives another output folder")
	}
}
