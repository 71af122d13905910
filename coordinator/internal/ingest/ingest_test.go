package ingest_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/ingest"
	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/protocol"
)

func states(ts []jobs.Transition) []job.State {
	out := make([]job.State, len(ts))
	for i, t := range ts {
		out[i] = t.State
	}
	return out
}

func TestEventsFoldToComplete(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	id := f.Submit(t, nil)
	out0 := f.Put(t, "outputs/run1/out0.txt", []byte("result of container 0"))
	out1 := f.Put(t, "outputs/run1/sub/out1.txt", []byte("result of container 1"))
	a0, a1 := f.Agent(id, 0, "c0.a"), f.Agent(id, 1, "c1.a")

	// The job moves only once both containers got there.
	a0.Walk(t, job.JobSubmitting)
	f.WantState(t, id, job.DownloadSubmitted)
	a1.Walk(t, job.JobSubmitting)
	f.WantState(t, id, job.JobSubmitting)
	a0.Walk(t, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted)
	f.WantState(t, id, job.JobSubmitting)
	a1.Walk(t, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted)
	f.WantState(t, id, job.UploadSubmitted)

	if err := a0.Send(ctx, protocol.Event{State: job.Complete, Outputs: []protocol.OutputFile{{File: "outputs/run1/out0.txt", CRC64NVME: out0}}}); err != nil {
		t.Fatal(err)
	}
	f.WantState(t, id, job.UploadSubmitted)
	pokes := f.Notify.Pokes.Load()
	if err := a1.Send(ctx, protocol.Event{State: job.Complete, Outputs: []protocol.OutputFile{{File: "outputs/run1/sub/out1.txt", CRC64NVME: out1}}}); err != nil {
		t.Fatal(err)
	}
	j := f.WantState(t, id, job.Complete)
	if f.Notify.Pokes.Load() == pokes {
		t.Fatal("the complete transition did not poke the notifier")
	}
	wantStates := []job.State{job.Created, job.DownloadSubmitted, job.JobSubmitting, job.JobSubmitted,
		job.UploadSubmitting, job.UploadSubmitted, job.Complete}
	if got := states(j.Transitions); !reflect.DeepEqual(got, wantStates) {
		t.Fatalf("job transitions %v, want %v", got, wantStates)
	}
	seen := map[string]bool{}
	for _, tr := range j.Transitions {
		if tr.TransID == "" || seen[tr.TransID] || tr.NotifSent {
			t.Fatalf("transition %+v: every job transition needs its own trans_id and an unsent flag", tr)
		}
		seen[tr.TransID] = true
	}
	wantOut := []jobs.Output{{File: "outputs/run1/out0.txt", CRC64NVME: out0}, {File: "outputs/run1/sub/out1.txt", CRC64NVME: out1}}
	if !reflect.DeepEqual(j.Outputs, wantOut) || j.OutputFileCount == nil || *j.OutputFileCount != 2 {
		t.Fatalf("outputs %+v count %v, want %+v", j.Outputs, j.OutputFileCount, wantOut)
	}
	if j.LogPath != logDir+"/"+id || j.Error != "" || j.AdminError != "" {
		t.Fatalf("logpath %q error %q admin error %q", j.LogPath, j.Error, j.AdminError)
	}
	subs, err := f.Store.GetSubJobs(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		if s.State != job.Complete || s.ExitCode == nil || *s.ExitCode != 0 || len(s.Outputs) != 1 || s.LastSeq != 5 {
			t.Fatalf("sub-job %+v", s)
		}
	}

	t.Run("a resent event is acknowledged and not applied again", func(t *testing.T) {
		before, _ := f.Store.GetSubJobs(ctx, id)
		for _, seq := range []int64{5, 1} {
			err := f.Ingest.ApplyEvent(ctx, ingest.Agent{JobID: id, Container: 0, Attempt: "c0.a"}, protocol.Event{Seq: seq, State: job.Complete})
			if err != nil {
				t.Fatalf("resend of seq %d = %v, want nil", seq, err)
			}
		}
		after, _ := f.Store.GetSubJobs(ctx, id)
		if len(after[0].Transitions) != len(before[0].Transitions) || after[0].LastSeq != 5 {
			t.Fatalf("a resend changed the sub-job: %+v", after[0])
		}
		if got := f.Job(t, id); len(got.Transitions) != len(j.Transitions) {
			t.Fatal("a resend changed the job")
		}
	})
	t.Run("the finishing attempt's replay after the job ended is acknowledged", func(t *testing.T) {
		// Its final event was applied but the ack lost: it reconnects with the event pending.
		// The assignment's NextSeq acknowledges it; another attempt is still refused.
		a, err := f.Ingest.Assignment(ctx, protocol.Hello{JobID: id, Container: 0, Attempt: "c0.a"}, 0)
		if err != nil || a.NextSeq != 6 || a.ContainerState != job.Complete {
			t.Fatalf("replay assignment %+v, %v; want next seq 6, container complete", a, err)
		}
		_, err = f.Ingest.Assignment(ctx, protocol.Hello{JobID: id, Container: 0, Attempt: "other"}, 0)
		wantCTSErr(t, err, ctserr.CodeInvalidJobState, "Job "+id+" is complete")
	})
	t.Run("events after the end are rejected", func(t *testing.T) {
		err := f.Ingest.ApplyEvent(ctx, ingest.Agent{JobID: id, Container: 0, Attempt: "c0.a"}, protocol.Event{Seq: 6, State: job.Error, AdminError: "late"})
		if !errors.Is(err, ingest.ErrRejected) {
			t.Fatalf("ApplyEvent = %v, want ErrRejected", err)
		}
	})
}

func TestEventRejections(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	id := f.Submit(t, nil)
	a := f.Agent(id, 0, "a1")
	a.Walk(t, job.JobSubmitting)
	for _, tc := range []struct {
		name      string
		jobID     string
		container int
		ev        protocol.Event
	}{
		{"skips states", id, 0, protocol.Event{Seq: 2, State: job.UploadSubmitted}},
		{"goes back", id, 0, protocol.Event{Seq: 2, State: job.DownloadSubmitted}},
		{"created", id, 0, protocol.Event{Seq: 2, State: job.Created}},
		{"canceled", id, 0, protocol.Event{Seq: 2, State: job.Canceled}},
		{"canceling", id, 0, protocol.Event{Seq: 2, State: job.Canceling}},
		{"not a state", id, 0, protocol.Event{Seq: 2, State: "running"}},
		{"unknown container", id, 7, protocol.Event{Seq: 1, State: job.JobSubmitting}},
		{"unknown job", "nope", 0, protocol.Event{Seq: 1, State: job.JobSubmitting}},
		// A new attempt that repeats an applied transition is no resend: its seq is its own.
		{"other attempt repeats", id, 0, protocol.Event{Seq: 1, State: job.JobSubmitting}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			attempt := "a1"
			if tc.name == "other attempt repeats" {
				attempt = "a2"
			}
			err := f.Ingest.ApplyEvent(ctx, ingest.Agent{JobID: tc.jobID, Container: tc.container, Attempt: attempt}, tc.ev)
			if !errors.Is(err, ingest.ErrRejected) {
				t.Fatalf("ApplyEvent = %v, want ErrRejected", err)
			}
		})
	}
	subs, _ := f.Store.GetSubJobs(ctx, id)
	if subs[0].State != job.JobSubmitting || subs[0].LastSeq != 1 || subs[0].Attempt != "a1" || len(subs[0].Transitions) != 3 {
		t.Fatalf("rejected events changed the sub-job: %+v", subs[0])
	}
	// Another attempt may not take over a container a1 started, even with the next state.
	err := f.Ingest.ApplyEvent(ctx, ingest.Agent{JobID: id, Container: 0, Attempt: "a2"}, protocol.Event{Seq: 1, State: job.JobSubmitted})
	if !errors.Is(err, ingest.ErrRejected) || !strings.Contains(err.Error(), "is run by agent attempt a1, not a2") {
		t.Fatalf("another attempt's event = %v, want ErrRejected", err)
	}
	subs, _ = f.Store.GetSubJobs(ctx, id)
	if subs[0].State != job.JobSubmitting || subs[0].Attempt != "a1" || subs[0].LastSeq != 1 {
		t.Fatalf("another attempt moved the container: %+v", subs[0])
	}
}

// completeBoth walks both containers to upload_submitted and sends their complete events with
// the given outputs; it returns the job.
func completeBoth(t *testing.T, f *fixture, id string, outs0, outs1 []protocol.OutputFile) *jobs.Job {
	t.Helper()
	a0, a1 := f.Agent(id, 0, "x"), f.Agent(id, 1, "x")
	a0.Walk(t, running...)
	a1.Walk(t, running...)
	if err := a0.Send(t.Context(), protocol.Event{State: job.Complete, Outputs: outs0}); err != nil {
		t.Fatal(err)
	}
	if err := a1.Send(t.Context(), protocol.Event{State: job.Complete, Outputs: outs1}); err != nil {
		t.Fatal(err)
	}
	return f.Job(t, id)
}

func TestOutputVerification(t *testing.T) {
	f := newFixture(t)
	good := f.Put(t, "outputs/run1/good.txt", []byte("good"))
	other := f.Put(t, "outputs/run1/other.txt", []byte("other"))
	cases := []struct {
		name         string
		outs0, outs1 []protocol.OutputFile
		err, admin   string
	}{
		{name: "crc differs in S3",
			outs0: []protocol.OutputFile{{File: "outputs/run1/good.txt", CRC64NVME: good}},
			outs1: []protocol.OutputFile{{File: "outputs/run1/other.txt", CRC64NVME: good}},
			err: "The job's output files failed verification: outputs/run1/other.txt is not in S3 as the container uploaded it. " +
				"Submit the job again; if it fails again, tell the service's admins.",
			admin: `output outputs/run1/other.txt has CRC64/NVME "` + other + `" in S3, but the agent uploaded "` + good + `"`},
		{name: "output missing in S3",
			outs0: []protocol.OutputFile{{File: "outputs/run1/good.txt", CRC64NVME: good}},
			outs1: []protocol.OutputFile{{File: "outputs/run1/never.txt", CRC64NVME: good}},
			err: "The job's output files failed verification: outputs/run1/never.txt is not in S3 as the container uploaded it. " +
				"Submit the job again; if it fails again, tell the service's admins.",
			admin: "check output outputs/run1/never.txt: The path 'outputs/run1/never.txt' was not found on the s3 system"},
		{name: "two containers wrote one file differently",
			outs0: []protocol.OutputFile{{File: "outputs/run1/good.txt", CRC64NVME: good}},
			outs1: []protocol.OutputFile{{File: "outputs/run1/good.txt", CRC64NVME: other}},
			err: "Containers 0 and 1 both wrote the output file outputs/run1/good.txt, with different contents, so neither was kept as the job's output. " +
				"Set \"declobber\": true in params (each container's outputs then go to <output_dir>/<container number>/), " +
				"or put the container number in the file name with a container_number parameter.",
			admin: "containers 0 and 1 wrote different contents to outputs/run1/good.txt"},
		{name: "no outputs at all",
			err: "The job produced no output files", admin: "The job produced no output files"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := completeBoth(t, f, f.Submit(t, nil), tc.outs0, tc.outs1)
			if j.State != job.Error || j.Error != tc.err || j.AdminError != tc.admin || j.Outputs != nil {
				t.Fatalf("job %s: error %q admin %q outputs %v\nwant error %q admin %q", j.State, j.Error, j.AdminError, j.Outputs, tc.err, tc.admin)
			}
		})
	}
	t.Run("one file from two containers with one content is one output", func(t *testing.T) {
		o := []protocol.OutputFile{{File: "outputs/run1/good.txt", CRC64NVME: good}}
		j := completeBoth(t, f, f.Submit(t, nil), o, o)
		if j.State != job.Complete || len(j.Outputs) != 1 || *j.OutputFileCount != 1 {
			t.Fatalf("job %s outputs %+v", j.State, j.Outputs)
		}
	})
}

func TestContainerErrors(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	good := f.Put(t, "outputs/run1/good.txt", []byte("good"))
	okOutputs := []protocol.OutputFile{{File: "outputs/run1/good.txt", CRC64NVME: good}}

	t.Run("non-zero exit", func(t *testing.T) {
		id := f.Submit(t, nil)
		a0, a1 := f.Agent(id, 0, "x"), f.Agent(id, 1, "x")
		a0.Walk(t, running...)
		if err := a0.Send(ctx, protocol.Event{State: job.Complete, Outputs: okOutputs}); err != nil {
			t.Fatal(err)
		}
		a1.Walk(t, job.JobSubmitting, job.JobSubmitted, job.ErrorProcessingSubmitting)
		f.WantState(t, id, job.ErrorProcessingSubmitting)
		a1.Walk(t, job.ErrorProcessingSubmitted)
		f.WantState(t, id, job.ErrorProcessingSubmitted)
		// A plain non-zero exit: the agent sends no user message, the job gets the generic one.
		if err := a1.Send(ctx, protocol.Event{State: job.Error, AdminError: "exit code 1", Traceback: "tb"}); err != nil {
			t.Fatal(err)
		}
		j := f.WantState(t, id, job.Error)
		want := []job.State{job.Created, job.DownloadSubmitted, job.JobSubmitting, job.JobSubmitted,
			job.ErrorProcessingSubmitting, job.ErrorProcessingSubmitted, job.Error}
		if !reflect.DeepEqual(states(j.Transitions), want) {
			t.Fatalf("transitions %v, want %v", states(j.Transitions), want)
		}
		if j.Error != "At least one container exited with a non-zero error code. Please examine the logs for details. "+
			"Container 1 exited with code 1. Its error output: cts logs "+id+" --container 1 --stderr (or GET /jobs/"+id+"/log/1/stderr)." ||
			j.AdminError != "container 1: exit code 1" || j.LogPath != logDir+"/"+id || j.Outputs != nil {
			t.Fatalf("error %q admin %q logpath %q outputs %v", j.Error, j.AdminError, j.LogPath, j.Outputs)
		}
		subs, _ := f.Store.GetSubJobs(ctx, id)
		if subs[1].ExitCode == nil || *subs[1].ExitCode != 1 || subs[1].Traceback != "tb" || subs[1].Error != "" {
			t.Fatalf("sub-job %+v", subs[1])
		}
	})
	t.Run("a kill the agent names", func(t *testing.T) {
		id := f.Submit(t, nil)
		a0, a1 := f.Agent(id, 0, "x"), f.Agent(id, 1, "x")
		a0.Walk(t, running...)
		if err := a0.Send(ctx, protocol.Event{State: job.Complete, Outputs: okOutputs}); err != nil {
			t.Fatal(err)
		}
		a1.Walk(t, job.JobSubmitting, job.JobSubmitted, job.ErrorProcessingSubmitting, job.ErrorProcessingSubmitted)
		oom := "The container used more than the job's memory limit of 10 MB (10000000 bytes) and was killed. Resubmit the job with more memory."
		if err := a1.Send(ctx, protocol.Event{State: job.Error, Error: oom, AdminError: oom, OOMKilled: true}); err != nil {
			t.Fatal(err)
		}
		if j := f.WantState(t, id, job.Error); j.Error != oom {
			t.Fatalf("error %q, want the agent's %q", j.Error, oom)
		}
	})
	t.Run("system errors", func(t *testing.T) {
		id := f.Submit(t, nil)
		a0, a1 := f.Agent(id, 0, "x"), f.Agent(id, 1, "x")
		// Container 0 fails its download, container 1 later fails without details.
		if err := a0.Send(ctx, protocol.Event{State: job.Error, Error: "An input file failed its checksum", AdminError: "crc mismatch on inputs/in/a.txt"}); err != nil {
			t.Fatal(err)
		}
		f.WantState(t, id, job.DownloadSubmitted)
		a1.Walk(t, job.JobSubmitting, job.JobSubmitted)
		if err := a1.Send(ctx, protocol.Event{State: job.Error}); err != nil {
			t.Fatal(err)
		}
		j := f.WantState(t, id, job.Error)
		if j.Error != "An input file failed its checksum" ||
			j.AdminError != "container 0: crc mismatch on inputs/in/a.txt; container 1: the agent reported an error without details" {
			t.Fatalf("error %q admin %q", j.Error, j.AdminError)
		}
	})
	t.Run("unexpected error", func(t *testing.T) {
		id := f.Submit(t, nil)
		a0 := f.Agent(id, 0, "x")
		a0.Walk(t, running...)
		if err := a0.Send(ctx, protocol.Event{State: job.Complete, Outputs: okOutputs}); err != nil {
			t.Fatal(err)
		}
		if err := f.Agent(id, 1, "y").Send(ctx, protocol.Event{State: job.Error, AdminError: "pull failed"}); err != nil {
			t.Fatal(err)
		}
		j := f.WantState(t, id, job.Error)
		if j.Error != "An unexpected error occurred." || j.AdminError != "container 1: pull failed" {
			t.Fatalf("error %q admin %q", j.Error, j.AdminError)
		}
	})
}

// If the fold after an applied event fails (a store outage), the agent is not acknowledged
// and resends the event; the resend must fold the job, or a job whose last event it was
// would never end.
func TestResendAfterFailedFoldFolds(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	id := f.Submit(t, nil)
	good := f.Put(t, "outputs/run1/good.txt", []byte("good"))
	outs := []protocol.OutputFile{{File: "outputs/run1/good.txt", CRC64NVME: good}}
	a0, a1 := f.Agent(id, 0, "x"), f.Agent(id, 1, "x")
	a0.Walk(t, running...)
	a1.Walk(t, running...)
	if err := a0.Send(ctx, protocol.Event{State: job.Complete, Outputs: outs}); err != nil {
		t.Fatal(err)
	}
	f.Store.SetHook(once(job.Complete, func(string) error { return errOutage }))
	last := protocol.Event{Seq: 5, State: job.Complete, Outputs: outs}
	err := f.Ingest.ApplyEvent(ctx, ingest.Agent{JobID: id, Container: 1, Attempt: "x"}, last)
	if !errors.Is(err, errOutage) || errors.Is(err, ingest.ErrRejected) {
		t.Fatalf("ApplyEvent during the outage = %v, want the outage (not a rejection)", err)
	}
	f.WantState(t, id, job.UploadSubmitted)
	if err := f.Ingest.ApplyEvent(ctx, ingest.Agent{JobID: id, Container: 1, Attempt: "x"}, last); err != nil {
		t.Fatalf("resend = %v", err)
	}
	f.WantState(t, id, job.Complete)
}

func TestTouch(t *testing.T) {
	f := newFixture(t)
	id := f.Submit(t, nil)
	n, err := f.Ingest.Touch(t.Context(), []jobs.Touch{{JobID: id, Sub: 0, Attempt: "x", At: jobs.Now()}, {JobID: id, Sub: 9, Attempt: "x", At: jobs.Now()}})
	if err != nil || n != 1 {
		t.Fatalf("Touch = %d, %v; want 1 (the unknown container is dropped)", n, err)
	}
	subs, _ := f.Store.GetSubJobs(t.Context(), id)
	if subs[0].LastSeen.IsZero() || !subs[1].LastSeen.IsZero() {
		t.Fatalf("last seen %v / %v", subs[0].LastSeen, subs[1].LastSeen)
	}
}

// TestHostileEvents performs the attacks of a hostile worker's events: outputs outside the
// job's output folder (an input, another job's log, a neighbour's declobber folder),
// malformed outputs and exit codes, and events of an earlier launch. Each is refused and
// changes nothing; long messages are cut.
func TestHostileEvents(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	id := f.Submit(t, func(in *jobinput.JobInput) { in.Params.Declobber = true })
	other := f.Submit(t, nil)
	a := f.Agent(id, 0, "x")
	a.Walk(t, running...)
	crc := f.Put(t, "outputs/run1/0/good.txt", []byte("good"))
	for _, tc := range []struct {
		name string
		ev   protocol.Event
		want string
	}{
		{"an input as output", protocol.Event{State: job.Complete, Outputs: []protocol.OutputFile{{File: "inputs/in/a.txt", CRC64NVME: f.CRCA}}},
			"output 0 inputs/in/a.txt is not in the container's output folder outputs/run1/0/"},
		{"another job's log", protocol.Event{State: job.Complete, Outputs: []protocol.OutputFile{{File: logDir + "/" + other + "/container-0-stdout.txt", CRC64NVME: crc}}},
			"is not in the container's output folder outputs/run1/0/"},
		{"the neighbour's declobber folder", protocol.Event{State: job.Complete, Outputs: []protocol.OutputFile{{File: "outputs/run1/1/x.txt", CRC64NVME: crc}}},
			"output 0 outputs/run1/1/x.txt is not in the container's output folder outputs/run1/0/"},
		{"the job's folder outside its declobber folder", protocol.Event{State: job.Complete, Outputs: []protocol.OutputFile{{File: "outputs/run1/x.txt", CRC64NVME: crc}}},
			"is not in the container's output folder"},
		{"a dot-dot path", protocol.Event{State: job.Complete, Outputs: []protocol.OutputFile{{File: "outputs/run1/0/../../x.txt", CRC64NVME: crc}}},
			"'..' segment"},
		{"a bad checksum", protocol.Event{State: job.Complete, Outputs: []protocol.OutputFile{{File: "outputs/run1/0/good.txt", CRC64NVME: "not-a-crc"}}},
			"CRC64/NVME"},
		{"an output twice", protocol.Event{State: job.Complete, Outputs: []protocol.OutputFile{{File: "outputs/run1/0/good.txt", CRC64NVME: crc}, {File: "outputs/run1/0/good.txt", CRC64NVME: crc}}},
			"listed twice"},
		{"outputs before complete", protocol.Event{State: job.Error, AdminError: "x", Outputs: []protocol.OutputFile{{File: "outputs/run1/0/good.txt", CRC64NVME: crc}}},
			"outputs may only come with complete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := a.Send(ctx, tc.ev)
			if !errors.Is(err, ingest.ErrRejected) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ApplyEvent = %v, want ErrRejected with %q", err, tc.want)
			}
		})
	}
	subs, _ := f.Store.GetSubJobs(ctx, id)
	if subs[0].State != job.UploadSubmitted || len(subs[0].Outputs) != 0 {
		t.Fatalf("hostile events changed the sub-job: %+v", subs[0])
	}
	t.Run("an exit code no process has", func(t *testing.T) {
		b := f.Agent(other, 0, "y")
		b.Walk(t, job.JobSubmitting, job.JobSubmitted)
		code := 300
		if err := b.Send(ctx, protocol.Event{State: job.UploadSubmitting, ExitCode: &code}); !errors.Is(err, ingest.ErrRejected) {
			t.Fatalf("exit code 300 = %v, want ErrRejected", err)
		}
	})
	t.Run("an agent of another launch", func(t *testing.T) {
		old := f.Agent(other, 1, "z")
		old.Launch = 1 // the job runs launch 0: a credential of launch 1 is not this job's
		if err := old.Send(ctx, protocol.Event{State: job.JobSubmitting}); !errors.Is(err, ingest.ErrRejected) {
			t.Fatalf("another launch's event = %v, want ErrRejected", err)
		}
	})
	t.Run("long messages are cut", func(t *testing.T) {
		b := f.Agent(other, 1, "w")
		if err := b.Send(ctx, protocol.Event{State: job.Error, Error: strings.Repeat("é", ingest.MaxUserError), AdminError: "boom",
			Traceback: strings.Repeat("t", 1<<20)}); err != nil {
			t.Fatal(err)
		}
		subs, _ := f.Store.GetSubJobs(ctx, other)
		if len(subs[1].Error) > ingest.MaxUserError || !strings.HasSuffix(subs[1].Error, "[cut by the coordinator]") ||
			len(subs[1].Traceback) > ingest.MaxTraceback {
			t.Fatalf("error of %d bytes, traceback of %d", len(subs[1].Error), len(subs[1].Traceback))
		}
	})
	// The honest complete, with its output in its own folder, is accepted.
	if err := a.Send(ctx, protocol.Event{State: job.Complete, Outputs: []protocol.OutputFile{{File: "outputs/run1/0/good.txt", CRC64NVME: crc}}}); err != nil {
		t.Fatal(err)
	}
}

// TestFoldFoldsOnFromTheMove pins the reads of an event that moves its job: the event's own
// read of the job, the fold's read, and none after the move (the fold goes on from the job the
// move returned).
func TestFoldFoldsOnFromTheMove(t *testing.T) {
	f := newFixture(t)
	id := f.Submit(t, nil)
	a0, a1 := f.Agent(id, 0, "c0.a"), f.Agent(id, 1, "c1.a")
	a0.Walk(t, job.JobSubmitting)
	before := f.Store.GetJobs.Load()
	a1.Walk(t, job.JobSubmitting) // the last container there: the job moves
	if n := f.Store.GetJobs.Load() - before; n != 2 {
		t.Fatalf("an event that moved its job read the job %d times, want 2 (the event's check and the fold's)", n)
	}
	f.WantState(t, id, job.JobSubmitting)
}
