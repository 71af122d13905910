package jobs_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/objects"
	"github.com/kbase/cts/shared/args"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/launcher"
	"github.com/kbase/cts/shared/protocol"
)

func TestSubmitRefusals(t *testing.T) {
	f := newFixture(t)
	// An object whose only checksum is a composite CRC32 (multipart) has no CRC64/NVME.
	c := f.objs.Client()
	mp, err := c.CreateMultipartUpload(t.Context(), &s3.CreateMultipartUploadInput{
		Bucket: aws.String("inputs"), Key: aws.String("in/composite.txt"),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32, ChecksumType: types.ChecksumTypeComposite,
	})
	if err != nil {
		t.Fatal(err)
	}
	part, err := c.UploadPart(t.Context(), &s3.UploadPartInput{
		Bucket: aws.String("inputs"), Key: aws.String("in/composite.txt"), UploadId: mp.UploadId,
		PartNumber: aws.Int32(1), Body: strings.NewReader("x"), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CompleteMultipartUpload(t.Context(), &s3.CompleteMultipartUploadInput{
		Bucket: aws.String("inputs"), Key: aws.String("in/composite.txt"), UploadId: mp.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{
			{PartNumber: aws.Int32(1), ETag: part.ETag, ChecksumCRC32: part.ChecksumCRC32},
		}},
	}); err != nil {
		t.Fatal(err)
	}

	manifest := &args.Parameter{Type: args.TypeManifestFile, ManifestFileFormat: "files"}
	cases := []struct {
		name string
		user jobs.User
		cfg  func(*jobs.Config)
		mod  func(*jobinput.JobInput)
		code ctserr.Code
		msg  string
	}{
		{name: "unknown site", mod: func(in *jobinput.JobInput) { in.Cluster = "nope" },
			code: ctserr.CodeJobFlowUnavailable, msg: "Job flow for cluster nope is not registered"},
		{name: "staff site", mod: func(in *jobinput.JobInput) { in.Cluster = "staffonly" },
			code: ctserr.CodeUnauthorized, msg: "To use the staffonly site, you must be a KBase staff member."},
		{name: "cpus", mod: func(in *jobinput.JobInput) { in.CPUs = 8 },
			code: ctserr.CodeIllegalParameter, msg: "The maximum number of CPUs for site kbase is 4 vs 8 submitted"},
		{name: "runtime", mod: func(in *jobinput.JobInput) { in.RuntimeSeconds = 7230 },
			code: ctserr.CodeIllegalParameter, msg: "The maximum runtime for site kbase is 60 minutes vs 120.5 submitted"},
		{name: "memory", mod: func(in *jobinput.JobInput) { in.Memory = 3_000_000_000 },
			code: ctserr.CodeIllegalParameter, msg: "The maximum memory for site kbase is 2 GB vs 3 submitted"},
		{name: "cpu hours", mod: func(in *jobinput.JobInput) { in.CPUs = 4; in.RuntimeSeconds = 3600 },
			code: ctserr.CodeIllegalParameter, msg: "Job compute time of 8 CPU hours is greater than the limit of 5"},
		{name: "manifest argument", mod: func(in *jobinput.JobInput) { in.Params.Args = append(in.Params.Args, args.Arg{Param: manifest}) },
			code: ctserr.CodeUnsupportedOperation, msg: "Manifest files are not currently supported for the kbase job flow"},
		{name: "manifest environment", mod: func(in *jobinput.JobInput) {
			in.Params.Environment = append(in.Params.Environment, args.EnvVar{Key: "M", Value: args.Arg{Param: manifest}})
		}, code: ctserr.CodeUnsupportedOperation, msg: "Manifest files are not currently supported for the kbase job flow"},
		{name: "image not registered", mod: func(in *jobinput.JobInput) { in.Image = "kbase/other" },
			code: ctserr.CodeNoSuchImage, msg: "No image docker.io/kbase/other with tag 'latest' exists in the system."},
		{name: "image digest not registered", mod: func(in *jobinput.JobInput) { in.Image = "kbase/tool@" + refimgDigest },
			code: ctserr.CodeNoSuchImage, msg: "No image docker.io/kbase/tool with digest " + refimgDigest + " exists in the system."},
		{name: "image needs refdata, no mount point", mod: func(in *jobinput.JobInput) { in.Image = "kbase/refimg:1" },
			code: ctserr.CodeIllegalParameter,
			msg:  "Image docker.io/kbase/refimg@" + refimgDigest + " requires reference data r1; a refdata mount point must be provided"},
		{name: "image needs refdata, no stager", mod: func(in *jobinput.JobInput) {
			in.Image, in.Params.RefdataMountPoint = "kbase/refimg:1", "/refdata"
		}, code: ctserr.CodeUnsupportedOperation,
			msg: "Image docker.io/kbase/refimg@" + refimgDigest + " requires reference data r1, which this service does not stage"},
		{name: "image needs refdata not staged at the site", mod: func(in *jobinput.JobInput) {
			in.Image, in.Params.RefdataMountPoint = "kbase/refimg:1", "/refdata"
		}, cfg: func(c *jobs.Config) { c.Refdata = refdataNotReady{} },
			code: ctserr.CodeInvalidRefdataState, msg: "Reference data r1 is not yet ready at site kbase"},
		{name: "output in the log dir", mod: func(in *jobinput.JobInput) { in.OutputDir = logDir + "/mine/" },
			code: ctserr.CodeS3PathInaccessible, msg: "Jobs may not write to the log directory " + logDir + "/"},
		{name: "output bucket missing", mod: func(in *jobinput.JobInput) { in.OutputDir = "nobucket/out/" },
			code: ctserr.CodeS3BucketNotFound, msg: "The bucket for path 'nobucket/out/' was not found on the s3 system"},
		{name: "output not allowed", cfg: func(c *jobs.Config) { c.AllowedPaths = []string{"inputs/", "outputs/allowed/"} },
			code: ctserr.CodeS3PathInaccessible, msg: "Output directory outputs/run1/ is not in the allowed S3 paths"},
		// "outputs/run" must not admit "outputs/run1/": an allowed path is a directory.
		{name: "allowed path is a directory", cfg: func(c *jobs.Config) { c.AllowedPaths = []string{"inputs", "outputs/run"} },
			code: ctserr.CodeS3PathInaccessible, msg: "Output directory outputs/run1/ is not in the allowed S3 paths"},
		{name: "input not allowed", cfg: func(c *jobs.Config) { c.AllowedPaths = []string{"outputs/", "inputs/in/b"} },
			code: ctserr.CodeS3PathInaccessible, msg: "Input file inputs/in/a.txt at index 0 is not in the allowed S3 paths"},
		{name: "input missing", mod: func(in *jobinput.JobInput) { in.InputFiles[1].File = "inputs/in/none.txt" },
			code: ctserr.CodeS3PathNotFound, msg: "The path 'inputs/in/none.txt' was not found on the s3 system"},
		{name: "input without crc64nvme", mod: func(in *jobinput.JobInput) { in.InputFiles[0].File = "inputs/in/composite.txt" },
			code: ctserr.CodeIllegalParameter, msg: "The S3 path 'inputs/in/composite.txt' does not have a CRC64/NVME checksum"},
		{name: "user crc differs", mod: func(in *jobinput.JobInput) { in.InputFiles[1].CRC64NVME = "AAAAAAAAAAA=" },
			code: ctserr.CodeChecksumMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pokes := f.notify.pokes.Load()
			user := tc.user
			if user.Name == "" {
				user = alice
			}
			id, err := f.service(tc.cfg).Submit(t.Context(), user, input(t, tc.mod))
			wantCTSErr(t, err, tc.code, tc.msg)
			if id != "" {
				t.Fatalf("a refused submit returned job ID %q", id)
			}
			if n, m := f.count(t, "jobs"), f.count(t, "subjobs"); n != 0 || m != 0 {
				t.Fatalf("a refused submit recorded %d jobs and %d sub-jobs", n, m)
			}
			if f.notify.pokes.Load() != pokes {
				t.Fatal("a refused submit poked the notifier")
			}
		})
	}
	t.Run("user crc mismatch message", func(t *testing.T) {
		_, err := f.svc.Submit(t.Context(), alice, input(t, func(in *jobinput.JobInput) { in.InputFiles[1].CRC64NVME = "AAAAAAAAAAA=" }))
		wantCTSErr(t, err, ctserr.CodeChecksumMismatch, "The expected CRC64/NVME checksum 'AAAAAAAAAAA=' for the path 'inputs/in/b.txt' does not match the actual checksum '"+f.crcB+"'")
	})
	if d, _ := f.launcher.launches(); d != 0 {
		t.Fatalf("refused submits reached the launcher %d times", d)
	}
}

func TestSubmitRecordsTheJob(t *testing.T) {
	f := newFixture(t)
	before := time.Now().Add(-time.Second)
	// The user may give the right CRC for some inputs and none for others.
	in := input(t, func(in *jobinput.JobInput) { in.InputFiles[0].CRC64NVME = f.crcA })
	id, err := f.svc.Submit(t.Context(), alice, in)
	if err != nil {
		t.Fatal(err)
	}
	j := f.wantState(t, id, job.Created)
	if j.User != "alice" || j.InputFileCount != 2 || j.Launch != nil || j.UpdateTime.Before(before) {
		t.Fatalf("job %+v", j)
	}
	wantFiles := []jobinput.InputFile{{File: "inputs/in/a.txt", CRC64NVME: f.crcA}, {File: "inputs/in/b.txt", CRC64NVME: f.crcB}}
	if !reflect.DeepEqual(j.Input.InputFiles, wantFiles) {
		t.Fatalf("input files %+v, want the CRCs filled in from S3: %+v", j.Input.InputFiles, wantFiles)
	}
	if !reflect.DeepEqual(j.InputSizes, []int64{int64(len(inputA)), int64(len(inputB))}) {
		t.Fatalf("input sizes %v", j.InputSizes)
	}
	if j.Input.OutputDir != "outputs/run1/" || j.Input.Image != "kbase/tool:1" {
		t.Fatalf("input %+v", j.Input)
	}
	// The job keeps a copy of the image without its usage information.
	if j.Image.Name != "docker.io/kbase/tool" || j.Image.Digest != toolDigest || j.Image.Tag != "1" ||
		j.Image.URLs != nil || j.Image.UsageNotes != "" || !reflect.DeepEqual(j.Image.Entrypoint, []string{"/bin/tool", "run"}) {
		t.Fatalf("image %+v", j.Image)
	}
	if len(j.Transitions) != 1 || j.Transitions[0].State != job.Created || j.Transitions[0].TransID == "" ||
		j.Transitions[0].NotifSent || !j.Transitions[0].Time.Equal(j.UpdateTime) {
		t.Fatalf("transitions %+v", j.Transitions)
	}
	subs, err := f.store.GetSubJobs(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != 2 {
		t.Fatalf("%d sub-jobs, want 2", len(subs))
	}
	for i, s := range subs {
		if s.SubID != i || s.State != job.DownloadSubmitted || len(s.Transitions) != 2 ||
			s.Transitions[0].State != job.Created || s.Transitions[1].State != job.DownloadSubmitted || s.ExitCode != nil {
			t.Fatalf("sub-job %d: %+v", i, s)
		}
	}
	if f.notify.pokes.Load() == 0 {
		t.Fatal("the notifier was not poked for the created transition")
	}
	// The write test of the output directory left nothing behind.
	if _, err := f.objs.Head(t.Context(), "outputs/run1/"+objects.WriteTestObject); err == nil {
		t.Fatal("the write test object is still there")
	}
	// Submitting is not launching: the submitter does that.
	if d, _ := f.launcher.launches(); d != 0 {
		t.Fatal("Submit called the launcher")
	}
	t.Run("get", func(t *testing.T) {
		if _, err := f.svc.Get(t.Context(), alice, id); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Get(t.Context(), admin, id); err != nil {
			t.Fatal(err)
		}
		_, err := f.svc.Get(t.Context(), bob, id)
		wantCTSErr(t, err, ctserr.CodeUnauthorized, "User bob may not access job "+id)
		_, err = f.svc.Get(t.Context(), alice, "nope")
		wantCTSErr(t, err, ctserr.CodeNoSuchJob, "No job with ID 'nope' exists")
	})
}

func TestSubmitterSubmitsOnce(t *testing.T) {
	f := newFixture(t)
	id, err := f.svc.Submit(t.Context(), alice, input(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := f.svc.SubmitPass(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	j := f.wantState(t, id, job.DownloadSubmitted)
	distinct, calls := f.launcher.launches()
	if distinct != 1 || calls != 1 {
		t.Fatalf("%d launches in %d calls, want 1 in 1", distinct, calls)
	}
	req := f.launcher.requests[0]
	if req.JobID != id || req.Attempt != 0 || req.Containers != 2 || req.CPUs != 1 || req.MemoryBytes != 10_000_000 ||
		req.RuntimeSeconds != 60 || req.User != "alice" || req.BatchName != "cts-"+id || req.DiskBytes < 1<<30 {
		t.Fatalf("submit request %+v", req)
	}
	wantEnv := map[string]string{
		"JOB_ID": id, "SERVICE_ROOT_URL": "http://coordinator.example:5000", "S3_URL": f.s3.Endpoint,
		"S3_ACCESS_KEY": f.s3.AccessKey, "S3_ERROR_LOG_PATH": logDir + "/" + id, "TOKEN_PATH": "/etc/cts/token",
	}
	if !reflect.DeepEqual(req.Env, wantEnv) {
		t.Fatalf("worker env %v\nwant %v", req.Env, wantEnv)
	}
	for _, v := range req.Env {
		if strings.Contains(v, f.s3.SecretKey) {
			t.Fatal("the S3 secret reached the worker environment")
		}
	}
	if j.Launch == nil || j.Launch.Site != "kbase" || j.Launch.Handle != f.launcher.launched[id+"/0"] {
		t.Fatalf("launch %+v", j.Launch)
	}
	if n := len(j.Transitions); n != 2 || j.Transitions[1].State != job.DownloadSubmitted {
		t.Fatalf("transitions %+v", j.Transitions)
	}
}

// A crash between the launcher's Submit and the recorded transition (simulated by a store
// failure there) leaves the job created; the next pass submits again, and the launcher's
// idempotency makes that the same launch.
func TestSubmitterCrashBetweenSubmitAndRecord(t *testing.T) {
	f := newFixture(t)
	f.store.setHook(once(job.DownloadSubmitted, func(string) error { return errOutage }))
	id, err := f.svc.Submit(t.Context(), alice, input(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.SubmitPass(t.Context()); !errors.Is(err, errOutage) {
		t.Fatalf("first pass = %v, want the injected outage", err)
	}
	f.wantState(t, id, job.Created)
	if err := f.svc.SubmitPass(t.Context()); err != nil {
		t.Fatal(err)
	}
	j := f.wantState(t, id, job.DownloadSubmitted)
	distinct, calls := f.launcher.launches()
	if distinct != 1 || calls != 2 {
		t.Fatalf("%d launches in %d calls, want 1 launch in 2 calls", distinct, calls)
	}
	if j.Launch.Handle != "cluster-1" {
		t.Fatalf("handle %q, want the first launch's", j.Launch.Handle)
	}
}

func TestSubmitterLauncherDown(t *testing.T) {
	f := newFixture(t)
	f.launcher.submitErr = launcher.ErrUnavailable
	id, err := f.svc.Submit(t.Context(), alice, input(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.SubmitPass(t.Context()); !errors.Is(err, launcher.ErrUnavailable) {
		t.Fatalf("pass = %v, want the launcher's error", err)
	}
	f.wantState(t, id, job.Created)
	f.launcher.mu.Lock()
	f.launcher.submitErr = nil
	f.launcher.mu.Unlock()
	if err := f.svc.SubmitPass(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.wantState(t, id, job.DownloadSubmitted)
}

func TestRunSubmitterWakesOnSubmit(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.svc.RunSubmitter(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunSubmitter = %v", err)
		}
	})
	id, err := f.svc.Submit(t.Context(), alice, input(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	// The interval is an hour: only the poke of Submit can move the job this soon.
	deadline := time.Now().Add(10 * time.Second)
	for f.job(t, id).State != job.DownloadSubmitted {
		if time.Now().After(deadline) {
			t.Fatal("the submitter did not pick the job up")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A job stored for a site that is no longer configured ends in error instead of waiting
// forever.
func TestSubmitterUnknownSite(t *testing.T) {
	f := newFixture(t)
	id, err := f.svc.Submit(t.Context(), alice, input(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	other := f.service(func(c *jobs.Config) { c.Sites = c.Sites[1:] })
	if err := other.SubmitPass(t.Context()); err != nil {
		t.Fatal(err)
	}
	j := f.wantState(t, id, job.Error)
	if j.Error != "An unexpected error occurred." || j.AdminError != `site "kbase" is not configured` {
		t.Fatalf("errors %q / %q", j.Error, j.AdminError)
	}
}

func TestAssignment(t *testing.T) {
	f := newFixture(t)
	id := f.submit(t, nil)
	ctx := t.Context()
	want := func(c int, file, crc string, size int) *protocol.Assignment {
		return &protocol.Assignment{
			JobID: id, Container: c, Image: "docker.io/kbase/tool@" + toolDigest,
			Command:         []string{"/bin/tool", "run", "--out", "/out", "/in/" + file},
			Env:             []string{"CONTAINER=" + string(rune('0'+c))},
			Inputs:          []protocol.InputFile{{S3Path: "inputs/in/" + file, CRC64NVME: crc, Size: int64(size), RelPath: file}},
			InputMountPoint: "/in", OutputMountPoint: "/out", OutputDir: "outputs/run1/",
			LogDir: logDir + "/" + id + "/", CPUs: 1, MemoryBytes: 10_000_000, RuntimeSeconds: 60, NextSeq: 1,
		}
	}
	for c, w := range []*protocol.Assignment{want(0, "a.txt", f.crcA, len(inputA)), want(1, "b.txt", f.crcB, len(inputB))} {
		a, err := f.svc.Assignment(ctx, protocol.Hello{JobID: id, Container: c, Attempt: "at1"})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, w) {
			t.Fatalf("assignment %d\n%+v\nwant\n%+v", c, a, w)
		}
	}
	// After two events of attempt at1 it expects seq 3 from at1, and 1 from a new attempt.
	f.agent(id, 0, "at1").walk(t, job.JobSubmitting, job.JobSubmitted)
	for attempt, next := range map[string]int64{"at1": 3, "at2": 1} {
		a, err := f.svc.Assignment(ctx, protocol.Hello{JobID: id, Container: 0, Attempt: attempt})
		if err != nil {
			t.Fatal(err)
		}
		if a.NextSeq != next {
			t.Fatalf("attempt %s: next seq %d, want %d", attempt, a.NextSeq, next)
		}
	}

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
			_, err := f.svc.Assignment(ctx, tc.hello)
			wantCTSErr(t, err, tc.code, tc.msg)
		})
	}
	t.Run("ended container", func(t *testing.T) {
		if err := f.agent(id, 1, "at1").send(ctx, protocol.Event{State: job.Error, AdminError: "boom"}); err != nil {
			t.Fatal(err)
		}
		_, err := f.svc.Assignment(ctx, protocol.Hello{JobID: id, Container: 1, Attempt: "at9"})
		wantCTSErr(t, err, ctserr.CodeInvalidJobState, "Container 1 of job "+id+" is error")
	})
	t.Run("canceling job still assigns", func(t *testing.T) {
		// An agent reconnecting during a cancel must be able to report its final state.
		if err := f.svc.Cancel(ctx, alice, id); err != nil {
			t.Fatal(err)
		}
		a, err := f.svc.Assignment(ctx, protocol.Hello{JobID: id, Container: 0, Attempt: "at1"})
		if err != nil || a.Container != 0 {
			t.Fatalf("assignment of a canceling job: %+v, %v", a, err)
		}
	})
}

// refdataNotReady is a RefdataChecker (an interface jobs owns) for which nothing is staged.
type refdataNotReady struct{}

func (refdataNotReady) Ready(_ context.Context, id, site string) error {
	return ctserr.New(ctserr.CodeInvalidRefdataState, "Reference data %s is not yet ready at site %s", id, site)
}
