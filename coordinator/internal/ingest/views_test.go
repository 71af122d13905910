package ingest_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/kbase/cts/coordinator/internal/ingest"
	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/jobs/jobstest"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/protocol"
)

// countingStore counts the sub-job and job documents ingest reads.
type countingStore struct {
	ingest.Store
	read, jobsRead atomic.Int64
	// full counts the reads of every sub-job of a job.
	full atomic.Int64
}

func (c *countingStore) GetJob(ctx context.Context, id string) (*jobs.Job, error) {
	c.jobsRead.Add(1)
	return c.Store.GetJob(ctx, id)
}

func (c *countingStore) GetSubJob(ctx context.Context, id string, sub int) (*jobs.SubJob, error) {
	c.read.Add(1)
	return c.Store.GetSubJob(ctx, id, sub)
}

func (c *countingStore) GetSubJobs(ctx context.Context, id string) ([]jobs.SubJob, error) {
	subs, err := c.Store.GetSubJobs(ctx, id)
	c.read.Add(int64(len(subs)))
	c.full.Add(1)
	return subs, err
}

// An event must not read every sub-job of its job: a job of n containers would cost n reads
// per event, n² in all. Two replicas (two Services over one store) apply the events of
// alternate containers, so each one's knowledge of the other's containers is behind: the job
// must still walk to complete, each step as soon as its last container got there.
func TestFoldReadsFewSubJobs(t *testing.T) {
	const n = 16
	f := newFixture(t)
	ctx := t.Context()
	var inputs []jobinput.InputFile
	for i := range n {
		p := fmt.Sprintf("inputs/many/in%02d.txt", i)
		inputs = append(inputs, jobinput.InputFile{File: p, CRC64NVME: f.Put(t, p, []byte(p))})
	}
	id := f.Submit(t, func(in *jobinput.JobInput) { in.InputFiles, in.NumContainers = inputs, n })
	cs := &countingStore{Store: f.Store}
	replicas := []*ingest.Service{
		ingest.New(ingest.Config{LogDir: logDir}, cs, f.Mover, f.Objs, jobstest.Discard()),
		ingest.New(ingest.Config{LogDir: logDir}, cs, f.Mover, f.Objs, jobstest.Discard()),
	}
	seq := make([]int64, n)
	send := func(i int, ev protocol.Event) {
		t.Helper()
		seq[i]++
		ev.Seq = seq[i]
		a := ingest.Agent{JobID: id, Container: i, Attempt: fmt.Sprintf("c%d", i)}
		if err := replicas[i%2].ApplyEvent(ctx, a, ev); err != nil {
			t.Fatalf("container %d event %s: %v", i, ev.State, err)
		}
	}
	zero := 0
	for _, step := range []struct {
		ev   job.State
		want job.State // the job's state once every container sent ev
	}{
		{job.JobSubmitting, job.JobSubmitting},
		{job.JobSubmitted, job.JobSubmitted},
		{job.UploadSubmitting, job.UploadSubmitting},
		{job.UploadSubmitted, job.UploadSubmitted},
		{job.Complete, job.Complete},
	} {
		before := f.Job(t, id).State
		for i := range n {
			ev := protocol.Event{State: step.ev}
			if step.ev == job.UploadSubmitting {
				ev.ExitCode = &zero
			}
			if step.ev == job.Complete {
				p := fmt.Sprintf("outputs/run1/out%02d.txt", i)
				ev.Outputs = []protocol.OutputFile{{File: p, CRC64NVME: f.Put(t, p, []byte(p))}}
			}
			if got := f.Job(t, id).State; got != before {
				t.Fatalf("the job moved to %s before container %d sent %s", got, i, step.ev)
			}
			send(i, ev)
		}
		f.WantState(t, id, step.want)
	}
	events := int64(5 * n)
	per := float64(cs.read.Load()) / float64(events)
	t.Logf("%d sub-jobs read for %d events of a job of %d containers: %.1f per event", cs.read.Load(), events, n, per)
	if per > n/2 {
		t.Fatalf("%.1f sub-jobs read per event, want at most %d (a job of %d containers)", per, n/2, n)
	}
	// The event reads its job (its launch and output folder); its fold, which most often
	// finds a container that keeps the job where it is, need not read it again.
	jobsPer := float64(cs.jobsRead.Load()) / float64(events)
	t.Logf("%d jobs read for %d events: %.2f per event", cs.jobsRead.Load(), events, jobsPer)
	if jobsPer > 1.5 {
		t.Fatalf("%.2f jobs read per event, want at most 1.5", jobsPer)
	}
}

// A sub-job moved behind ingest's back (the launcher ending a job's containers) is seen by
// the next fold, whatever ingest knew before.
func TestFoldSeesOutsideChanges(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	id := f.Submit(t, nil)
	f.Agent(id, 0, "c0").Walk(t, job.JobSubmitting, job.JobSubmitted)
	f.Agent(id, 1, "c1").Walk(t, job.JobSubmitting)
	f.WantState(t, id, job.JobSubmitting)
	// Container 1 moves without ingest, then container 0 ends: the fold must see both.
	if _, err := f.Store.TransitionSubJob(ctx, id, 1, []job.State{job.JobSubmitting}, jobs.Transition{State: job.JobSubmitted, Time: jobs.Now()},
		jobs.SubJobUpdate{}, jobs.Seq{}); err != nil {
		t.Fatal(err)
	}
	f.Agent(id, 0, "c0").Walk(t, job.JobSubmitting, job.JobSubmitted) // resends: acknowledged, and folded
	f.WantState(t, id, job.JobSubmitted)
}

// An agent session's events read the job once, and the folds read every container only when
// they must. The session's events: its first applied event reads it (the launch
// check, the output folder), and the later ones take it from the session (ingest.KnownJob),
// as the job's input and launch cannot change once a container moved. The folds read the job
// only when it may move. Without the session's job every event read it.
func TestSessionReadsItsJobOnce(t *testing.T) {
	const n = 8
	f := newFixture(t)
	ctx := t.Context()
	var inputs []jobinput.InputFile
	for i := range n {
		p := fmt.Sprintf("inputs/once/in%02d.txt", i)
		inputs = append(inputs, jobinput.InputFile{File: p, CRC64NVME: f.Put(t, p, []byte(p))})
	}
	id := f.Submit(t, func(in *jobinput.JobInput) { in.InputFiles, in.NumContainers = inputs, n })
	cs := &countingStore{Store: f.Store}
	svc := ingest.New(ingest.Config{LogDir: logDir}, cs, f.Mover, f.Objs, jobstest.Discard())
	sessions := make([]ingest.Agent, n)
	for i := range sessions {
		sessions[i] = ingest.Agent{JobID: id, Container: i, Attempt: fmt.Sprintf("c%d", i), Known: &ingest.KnownJob{}}
	}
	zero := 0
	events := 0
	for seq, st := range []job.State{job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted, job.Complete} {
		for i := range n {
			ev := protocol.Event{Seq: int64(seq + 1), State: st}
			if st == job.UploadSubmitting {
				ev.ExitCode = &zero
			}
			if st == job.Complete {
				p := fmt.Sprintf("outputs/run1/once%02d.txt", i)
				ev.Outputs = []protocol.OutputFile{{File: p, CRC64NVME: f.Put(t, p, []byte(p))}}
			}
			if err := svc.ApplyEvent(ctx, sessions[i], ev); err != nil {
				t.Fatalf("container %d event %s: %v", i, st, err)
			}
			events++
		}
	}
	f.WantState(t, id, job.Complete)
	per := float64(cs.jobsRead.Load()) / float64(events)
	t.Logf("%d jobs read for %d events: %.2f per event", cs.jobsRead.Load(), events, per)
	if per > 0.75 {
		t.Fatalf("%.2f jobs read per event, want at most 0.75: a session's later events must not read the job", per)
	}
	// Every container is read at the job's first fold, then for the steps that branch
	// (job_submitted, upload_submitting) and the end; the steps with one way out move from
	// what ingest knows (download_submitted, job_submitting): 4 reads of every container, not 6.
	if full := cs.full.Load(); full > 4 {
		t.Fatalf("every container read %d times, want at most 4", full)
	}
}
