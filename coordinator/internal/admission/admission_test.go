package admission_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/kbase/cts/coordinator/internal/access"
	"github.com/kbase/cts/coordinator/internal/admission"
	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/images"
	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/objects"
	"github.com/kbase/cts/coordinator/internal/sites"
	"github.com/kbase/cts/shared/args"
	"github.com/kbase/cts/shared/job"
)

func TestSubmitRefusals(t *testing.T) {
	f := newFixture(t)
	// An object whose only checksum is a composite CRC32 (multipart) has no CRC64/NVME.
	c := f.Objs.Client()
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

	if err := f.Store.SaveImage(t.Context(), images.Image{Name: "docker.io/kbase/refdefault", Tag: "1",
		Digest: "sha256:" + strings.Repeat("d", 64), Entrypoint: []string{"/x"}, RefdataID: "r1",
		DefaultRefdataMountPoint: "/refdata/db", RegisteredBy: "admin", RegisteredOn: time.Now()}); err != nil {
		t.Fatal(err)
	}
	manifest := &args.Parameter{Type: args.TypeManifestFile, ManifestFileFormat: "files"}
	cases := []struct {
		name string
		user jobs.User
		cfg  func(*admission.Config)
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
			code: ctserr.CodeIllegalParameter, msg: "The maximum runtime for site kbase is 60 minutes vs 120.5 minutes submitted"},
		{name: "memory", mod: func(in *jobinput.JobInput) { in.Memory = 3_000_000_000 },
			code: ctserr.CodeIllegalParameter, msg: "The maximum memory for site kbase is 2 GB vs 3 GB submitted"},
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
		}, cfg: func(c *admission.Config) { c.Refdata = refdataNotReady{} },
			code: ctserr.CodeInvalidRefdataState, msg: "Reference data r1 is not yet ready at site kbase"},
		{name: "output in the log dir", mod: func(in *jobinput.JobInput) { in.OutputDir = logDir + "/mine/" },
			code: ctserr.CodeS3PathInaccessible, msg: "Jobs may not write to the log directory " + logDir + "/: the output folder " + logDir + "/mine/ overlaps it"},
		// Outputs named like "container_logs/<job>/container-0-stdout.txt" would replace logs.
		{name: "output holding the log dir", mod: func(in *jobinput.JobInput) { in.OutputDir = "cts-logs/" },
			code: ctserr.CodeS3PathInaccessible, msg: "Jobs may not write to the log directory " + logDir + "/: the output folder cts-logs/ overlaps it"},
		// Inputs are copied into outputs: another job's log must not be one.
		{name: "input in the log dir", mod: func(in *jobinput.JobInput) { in.InputFiles[1].File = logDir + "/job1/container-0-stdout.txt" },
			code: ctserr.CodeS3PathInaccessible, msg: "Input file at index 1: The S3 path '" + logDir + "/job1/container-0-stdout.txt' is in the container log folder " + logDir + "/, which jobs may not read"},
		{name: "input of another user", cfg: func(c *admission.Config) { c.Access = perUser(t) },
			mod: func(in *jobinput.JobInput) {
				in.OutputDir = "outputs/alice/out/"
				in.InputFiles[0].File = "inputs/bob/secret.txt"
			},
			code: ctserr.CodeS3PathInaccessible, msg: "Input file at index 0: User alice may not read the S3 path 'inputs/bob/secret.txt': jobs may read only below outputs/alice/, inputs/shared/ (GET /whoami lists them)"},
		{name: "output of another user", cfg: func(c *admission.Config) { c.Access = perUser(t) },
			mod:  func(in *jobinput.JobInput) { in.OutputDir = "outputs/bob/out/" },
			code: ctserr.CodeS3PathInaccessible, msg: "User alice may not write to the S3 folder outputs/bob/out/: jobs may write only below outputs/alice/ (GET /whoami lists them)"},
		{name: "output in a read-only folder", cfg: func(c *admission.Config) { c.Access = perUser(t) },
			mod:  func(in *jobinput.JobInput) { in.OutputDir = "inputs/shared/out/" },
			code: ctserr.CodeS3PathInaccessible, msg: "User alice may not write to the S3 folder inputs/shared/out/: jobs may write only below outputs/alice/ (GET /whoami lists them)"},
		{name: "command line too long", mod: func(in *jobinput.JobInput) {
			for range 200 {
				in.Params.Args = append(in.Params.Args, args.Arg{Literal: strings.Repeat("a", 1000)})
			}
			in.Params.Environment = args.Environment{{Key: "FILES", Value: args.Arg{Param: &args.Parameter{Type: args.TypeInputFiles, InputFilesFormat: args.CommaSeparatedList}}}}
			for range 1000 {
				in.Params.Args = append(in.Params.Args, args.Arg{Literal: strings.Repeat("b", 1000)})
			}
		}, code: ctserr.CodeIllegalParameter,
			msg: "The command line of container 0 is too long for the container runtime: its 1205 arguments and 1 environment variables take 1210899 bytes, more than the 1048576 bytes a container's command line may have; use a manifest file or more containers"},
		{name: "image refdata mount point inside the inputs", mod: func(in *jobinput.JobInput) {
			in.Image, in.Params.InputMountPoint = "kbase/refdefault:1", "/refdata"
		}, cfg: func(c *admission.Config) { c.Refdata = refdataReady{} }, code: ctserr.CodeIllegalParameter,
			msg: "The image's reference data mount point /refdata/db cannot be used with this job: Value error, The input_mount_point /refdata and the refdata_mount_point /refdata/db are the same folder or one is inside the other; mount them side by side, as /input_files and /output_files; set params.refdata_mount_point"},
		{name: "output bucket missing", mod: func(in *jobinput.JobInput) { in.OutputDir = "nobucket/out/" },
			code: ctserr.CodeS3BucketNotFound, msg: "The bucket for path 'nobucket/out/' was not found on the s3 system"},
		{name: "output not allowed", cfg: func(c *admission.Config) { c.AllowedPaths = []string{"inputs/", "outputs/allowed/"} },
			code: ctserr.CodeS3PathInaccessible, msg: "User alice may not write to the S3 folder outputs/run1/: jobs may write only below inputs/, outputs/allowed/ (GET /whoami lists them)"},
		// "outputs/run" must not admit "outputs/run1/": an allowed path is a directory.
		{name: "allowed path is a directory", cfg: func(c *admission.Config) { c.AllowedPaths = []string{"inputs", "outputs/run"} },
			code: ctserr.CodeS3PathInaccessible, msg: "User alice may not write to the S3 folder outputs/run1/: jobs may write only below inputs/, outputs/run/ (GET /whoami lists them)"},
		{name: "input not allowed", cfg: func(c *admission.Config) { c.AllowedPaths = []string{"outputs/", "inputs/in/b"} },
			code: ctserr.CodeS3PathInaccessible, msg: "Input file at index 0: User alice may not read the S3 path 'inputs/in/a.txt': jobs may read only below outputs/, inputs/in/b/ (GET /whoami lists them)"},
		{name: "input missing", mod: func(in *jobinput.JobInput) { in.InputFiles[1].File = "inputs/in/none.txt" },
			code: ctserr.CodeS3PathNotFound, msg: "The path 'inputs/in/none.txt' was not found on the s3 system"},
		{name: "input without crc64nvme", mod: func(in *jobinput.JobInput) { in.InputFiles[0].File = "inputs/in/composite.txt" },
			code: ctserr.CodeIllegalParameter, msg: "The S3 path 'inputs/in/composite.txt' does not have a CRC64/NVME checksum"},
		{name: "user crc differs", mod: func(in *jobinput.JobInput) { in.InputFiles[1].CRC64NVME = "AAAAAAAAAAA=" },
			code: ctserr.CodeChecksumMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pokes := f.Notify.Pokes.Load()
			user := tc.user
			if user.Name == "" {
				user = alice
			}
			id, err := f.NewAdmission(tc.cfg).Submit(t.Context(), user, input(t, tc.mod))
			wantCTSErr(t, err, tc.code, tc.msg)
			if id != "" {
				t.Fatalf("a refused submit returned job ID %q", id)
			}
			if n, m := f.Count(t, "jobs"), f.Count(t, "subjobs"); n != 0 || m != 0 {
				t.Fatalf("a refused submit recorded %d jobs and %d sub-jobs", n, m)
			}
			if f.Notify.Pokes.Load() != pokes {
				t.Fatal("a refused submit poked the notifier")
			}
		})
	}
	t.Run("user crc mismatch message", func(t *testing.T) {
		_, err := f.Admission.Submit(t.Context(), alice, input(t, func(in *jobinput.JobInput) { in.InputFiles[1].CRC64NVME = "AAAAAAAAAAA=" }))
		wantCTSErr(t, err, ctserr.CodeChecksumMismatch, "The expected CRC64/NVME checksum 'AAAAAAAAAAA=' for the path 'inputs/in/b.txt' does not match the actual checksum '"+f.CRCB+"'")
	})
	if d, _ := f.Launcher.Launches(); d != 0 {
		t.Fatalf("refused submits reached the launcher %d times", d)
	}
}

// perUser is a site where each user owns outputs/<user>/ and everyone reads inputs/shared/.
func perUser(t *testing.T) *access.Rules {
	r, err := access.New(access.Config{LogDir: logDir, Write: []string{"outputs/{user}/"}, Read: []string{"inputs/shared/"}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSubmitRecordsTheJob(t *testing.T) {
	f := newFixture(t)
	before := time.Now().Add(-time.Second)
	// The user may give the right CRC for some inputs and none for others.
	in := input(t, func(in *jobinput.JobInput) { in.InputFiles[0].CRC64NVME = f.CRCA })
	id, err := f.Admission.Submit(t.Context(), alice, in)
	if err != nil {
		t.Fatal(err)
	}
	j := f.WantState(t, id, job.Created)
	if j.User != "alice" || j.InputFileCount != 2 || j.Launch != nil || j.UpdateTime.Before(before) {
		t.Fatalf("job %+v", j)
	}
	wantFiles := []jobinput.InputFile{{File: "inputs/in/a.txt", CRC64NVME: f.CRCA}, {File: "inputs/in/b.txt", CRC64NVME: f.CRCB}}
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
	subs, err := f.Store.GetSubJobs(t.Context(), id)
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
	if f.Notify.Pokes.Load() == 0 {
		t.Fatal("the notifier was not poked for the created transition")
	}
	// The write test of the output directory left nothing behind.
	if _, err := f.Objs.Head(t.Context(), "outputs/run1/"+objects.WriteTestObject); err == nil {
		t.Fatal("the write test object is still there")
	}
	// Submitting is not launching: the submitter does that.
	if d, _ := f.Launcher.Launches(); d != 0 {
		t.Fatal("Submit called the launcher")
	}
	t.Run("get", func(t *testing.T) {
		if _, err := f.Records.Get(t.Context(), alice, id); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Records.Get(t.Context(), admin, id); err != nil {
			t.Fatal(err)
		}
		_, err := f.Records.Get(t.Context(), bob, id)
		wantCTSErr(t, err, ctserr.CodeUnauthorized, "User bob may not access job "+id)
		_, err = f.Records.Get(t.Context(), alice, "nope")
		wantCTSErr(t, err, ctserr.CodeNoSuchJob, "No job with ID 'nope' exists")
	})
}

// refdataNotReady is a RefdataChecker (an interface admission owns) for which nothing is staged.
type refdataNotReady struct{}

type refdataReady struct{}

func (refdataReady) Ready(context.Context, string, string) error { return nil }

func (refdataNotReady) Ready(_ context.Context, id, site string) error {
	return ctserr.New(ctserr.CodeInvalidRefdataState, "Reference data %s is not yet ready at site %s", id, site)
}

// unavailable is a sites.Availability with one site down.
type unavailable struct{ site, reason string }

func (u unavailable) Available(site string) (bool, string) {
	if site == u.site {
		return false, u.reason
	}
	return true, ""
}

// A site whose launcher plugin is down refuses new jobs with the reason (as the Python
// service's unavailable job flows), instead of letting them wait in created.
func TestSubmitToUnavailableSite(t *testing.T) {
	f := newFixture(t)
	dir := sites.New([]sites.Site{{Name: "kbase", CPUsPerNode: 4, MemoryPerNodeGB: 2, MaxRuntimeMin: 60}}, f.Store,
		unavailable{"kbase", "the launcher plugin process exited"}, discard())
	svc := admission.New(admission.Config{LogDir: logDir, MaxCPUHours: 5}, admission.Deps{Store: f.Store, Sites: dir,
		Objects: f.Objs, Images: f.Imgs, Notify: f.Notify, Submitter: f.Launch, Log: discard()})
	_, err := svc.Submit(t.Context(), alice, input(t, nil))
	wantCTSErr(t, err, ctserr.CodeJobFlowUnavailable, "Job flow for cluster kbase is unavailable: the launcher plugin process exited")
	if n := f.Count(t, "jobs"); n != 0 {
		t.Fatalf("%d jobs recorded", n)
	}
}
