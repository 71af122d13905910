package ingest_test

import (
	"reflect"
	"testing"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/ingest"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/protocol"
)

func TestAssignment(t *testing.T) {
	f := newFixture(t)
	id := f.Submit(t, nil)
	ctx := t.Context()
	want := func(c int, file, crc string, size int) *protocol.Assignment {
		return &protocol.Assignment{
			JobID: id, Container: c, Image: "docker.io/kbase/tool@" + toolDigest,
			Command:         []string{"/bin/tool", "run", "--out", "/out", "/in/" + file},
			Env:             []string{"CONTAINER=" + string(rune('0'+c))},
			Inputs:          []protocol.InputFile{{S3Path: "inputs/in/" + file, CRC64NVME: crc, Size: int64(size), RelPath: file}},
			InputMountPoint: "/in", OutputMountPoint: "/out", OutputDir: "outputs/run1/",
			LogDir: logDir + "/" + id + "/", CPUs: 1, MemoryBytes: 10_000_000, RuntimeSeconds: 60, NextSeq: 1,
			ContainerState: job.DownloadSubmitted,
		}
	}
	for c, w := range []*protocol.Assignment{want(0, "a.txt", f.CRCA, len(inputA)), want(1, "b.txt", f.CRCB, len(inputB))} {
		a, err := f.Ingest.Assignment(ctx, protocol.Hello{JobID: id, Container: c, Attempt: "at1"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, w) {
			t.Fatalf("assignment %d\n%+v\nwant\n%+v", c, a, w)
		}
	}
	// After two events of attempt at1 it expects seq 3 from at1; another attempt may not take
	// the container over (an admin's dry run may still read its assignment).
	f.Agent(id, 0, "at1").Walk(t, job.JobSubmitting, job.JobSubmitted)
	a, err := f.Ingest.Assignment(ctx, protocol.Hello{JobID: id, Container: 0, Attempt: "at1"}, 0)
	if err != nil || a.NextSeq != 3 {
		t.Fatalf("at1 again: next seq %+v, %v; want 3", a, err)
	}
	_, err = f.Ingest.Assignment(ctx, protocol.Hello{JobID: id, Container: 0, Attempt: "at2"}, 0)
	wantCTSErr(t, err, ctserr.CodeUnauthorized, "Container 0 of job "+id+" is run by agent attempt at1, not at2")
	if _, err := f.Ingest.Assignment(ctx, protocol.Hello{JobID: id, Container: 0, Attempt: "dry", DryRun: true}, ingest.NoLaunch); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	// A credential of another launch of the job is refused.
	_, err = f.Ingest.Assignment(ctx, protocol.Hello{JobID: id, Container: 1, Attempt: "at1"}, 1)
	wantCTSErr(t, err, ctserr.CodeUnauthorized, "The agent's credential is for launch attempt 1 of job "+id+", which was launched again (attempt 0)")

	refusals := []struct {
		name  string
		hello protocol.Hello
		code  ctserr.Code
		msg   string
	}{
		{"unknown job", protocol.Hello{JobID: "nope", Attempt: "a"}, ctserr.CodeNoSuchJob, "No job with ID 'nope' exists"},
		{"container out of range", protocol.Hello{JobID: id, Container: 2, Attempt: "a"}, ctserr.CodeNoSuchSubJob, "Job " + id + " has no container 2"},
		{"negative container", protocol.Hello{JobID: id, Container: -1, Attempt: "a"}, ctserr.CodeNoSuchSubJob, "Job " + id + " has no container -1"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.Ingest.Assignment(ctx, tc.hello, 0)
			wantCTSErr(t, err, tc.code, tc.msg)
		})
	}
	t.Run("ended container", func(t *testing.T) {
		if err := f.Agent(id, 1, "at1").Send(ctx, protocol.Event{State: job.Error, AdminError: "boom"}); err != nil {
			t.Fatal(err)
		}
		_, err := f.Ingest.Assignment(ctx, protocol.Hello{JobID: id, Container: 1, Attempt: "at9"}, 0)
		wantCTSErr(t, err, ctserr.CodeInvalidJobState, "Container 1 of job "+id+" is error")
	})
	t.Run("canceling job still assigns", func(t *testing.T) {
		// An agent reconnecting during a cancel must be able to report its final state.
		if err := f.Launch.Cancel(ctx, alice, id); err != nil {
			t.Fatal(err)
		}
		a, err := f.Ingest.Assignment(ctx, protocol.Hello{JobID: id, Container: 0, Attempt: "at1"}, 0)
		if err != nil || a.Container != 0 {
			t.Fatalf("assignment of a canceling job: %+v, %v", a, err)
		}
	})
}
