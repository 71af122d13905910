// Package admission owns the first step of a job's life: POST /jobs after jobinput has
// validated the request. Submit checks the job against its site (configured, active, staff
// only, CPU / memory / runtime limits, the CPU-hour cap), resolves the image to its
// registered digest, requires the image's reference data to be staged at the site, checks
// that every container's command line can be started (args.CheckCommand), applies the site's
// access rules (package access: the user may write the output folder and read every input;
// never the log folder), proves the output folder writable on an open site, and heads every
// input in S3 (a CRC64/NVME is required; one the user supplied must match). Only when every check passed are the job (created) and its sub-jobs
// written, in one CreateJob; nothing is written otherwise. Preview makes the same checks and
// writes nothing: it returns what each container would run (POST /jobs/preview).
//
// It must not launch anything: it pokes the submitter (package launch), which does.
package admission

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"github.com/kbase/cts/coordinator/internal/access"
	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/images"
	"github.com/kbase/cts/coordinator/internal/ingest"
	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/sites"
	"github.com/kbase/cts/shared/args"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/s3path"
)

// Store is the persistence admission needs.
type Store interface {
	// CreateJob inserts the job and its sub-jobs. The job must not exist.
	CreateJob(ctx context.Context, j *jobs.Job, subs []jobs.SubJob) error
}

// Objects is the S3 access admission needs. Errors that are the caller's fault (missing
// object, access denied) are *ctserr.Error.
type Objects interface {
	// Head returns the object's size and CRC64/NVME (HeadObject with ChecksumMode enabled).
	Head(ctx context.Context, s3path string) (jobs.ObjectMeta, error)
	// CheckWritable proves the service can write below dir ("bucket/prefix/") by writing and
	// deleting a test object.
	CheckWritable(ctx context.Context, dir string) error
}

// ImageResolver finds the registered image a job names.
type ImageResolver interface {
	Resolve(ctx context.Context, ref string) (*images.Image, error)
}

// RefdataChecker reports whether reference data is ready at a site: nil, or a *ctserr.Error
// (40060 unknown, 30400 not staged there yet).
type RefdataChecker interface {
	Ready(ctx context.Context, refdataID, site string) error
}

// Sites is the site directory admission checks against (*sites.Directory).
type Sites interface {
	Site(name string) (*sites.Site, bool)
	// CheckUsable returns a *ctserr.Error when the site is deactivated or unavailable.
	CheckUsable(ctx context.Context, name string) error
}

// Waker is told that a job was created (the submitter, which then launches it).
type Waker interface{ Poke() }

// Config is admission's configuration.
type Config struct {
	// LogDir is "bucket/prefix/" under which container logs go: no job may read or write
	// there.
	LogDir string
	// Access are the site's S3 access rules (which inputs a user may read, which output folders
	// write). Nil: the rules of LogDir and AllowedPaths alone.
	Access *access.Rules
	// AllowedPaths, when Access is nil, are the only S3 prefixes jobs may read and write.
	AllowedPaths []string
	// MaxCPUHours caps cpus × containers × runtime.
	MaxCPUHours float64
	// HeadConcurrency bounds the HeadObject calls of one submit (default 10).
	HeadConcurrency int
	// Refdata tells whether reference data is staged at a site (nil: images that need
	// reference data are refused).
	Refdata RefdataChecker
}

// Deps are admission's collaborators.
type Deps struct {
	Store   Store
	Sites   Sites
	Objects Objects
	Images  ImageResolver
	// Notify is poked for the created transition (the Kafka outbox).
	Notify jobs.Notifier
	// Submitter is poked when a job was created; nil: the submitter finds it on its next pass.
	Submitter Waker
	Log       *slog.Logger
}

// Service admits jobs. It is safe for concurrent use.
type Service struct {
	cfg Config
	d   Deps
	// rulesErr is why the rules of LogDir and AllowedPaths could not be compiled (a
	// configuration the coordinator refuses at start; tests may still build one).
	rulesErr error
}

// New returns a Service.
func New(cfg Config, d Deps) *Service {
	if cfg.HeadConcurrency <= 0 {
		cfg.HeadConcurrency = 10
	}
	if cfg.LogDir != "" && !strings.HasSuffix(cfg.LogDir, "/") {
		cfg.LogDir += "/"
	}
	s := &Service{cfg: cfg, d: d}
	if cfg.Access == nil {
		s.cfg.Access, s.rulesErr = access.New(access.Config{LogDir: cfg.LogDir, Allowed: slices.Clone(cfg.AllowedPaths)})
	}
	return s
}

// Submit checks a validated job input against the site, the image registry and S3, records
// the job and returns its ID. Nothing is recorded when any check fails.
func (s *Service) Submit(ctx context.Context, u jobs.User, in *jobinput.JobInput) (string, error) {
	j, err := s.prepare(ctx, u, in)
	if err != nil {
		return "", err
	}
	now := j.UpdateTime
	subs := make([]jobs.SubJob, in.NumContainers)
	for i := range subs {
		subs[i] = jobs.SubJob{
			JobID: j.ID, SubID: i, State: job.DownloadSubmitted, UpdateTime: now,
			Transitions: []jobs.Transition{{State: job.Created, Time: now}, {State: job.DownloadSubmitted, Time: now}},
		}
	}
	if err := s.d.Store.CreateJob(ctx, j, subs); err != nil {
		return "", fmt.Errorf("save job: %w", err)
	}
	s.d.Log.InfoContext(ctx, "job created", "job_id", j.ID, "user", u.Name, "cluster", in.Cluster, "containers", in.NumContainers)
	s.d.Notify.Poke()
	if s.d.Submitter != nil {
		s.d.Submitter.Poke()
	}
	return j.ID, nil
}

// ContainerPreview is what one container of a job would run: its command (the image's
// entrypoint and the generated arguments), its environment, and the paths of its input files
// inside the container.
type ContainerPreview struct {
	Container int
	Command   []string
	Env       []string
	Inputs    []string
}

// Preview makes every check Submit makes (the same errors) and returns what each container
// would run, without recording anything: a dry run of Submit. The commands are built as the
// agents' assignments are (ingest.BuildAssignment).
func (s *Service) Preview(ctx context.Context, u jobs.User, in *jobinput.JobInput) ([]ContainerPreview, error) {
	j, err := s.prepare(ctx, u, in)
	if err != nil {
		return nil, err
	}
	out := make([]ContainerPreview, 0, in.NumContainers)
	for c := range in.NumContainers {
		a, err := ingest.BuildAssignment(j, c, s.cfg.LogDir, 0)
		if err != nil {
			return nil, fmt.Errorf("preview container %d: %w", c, err)
		}
		cp := ContainerPreview{Container: c, Command: a.Command, Env: a.Env, Inputs: []string{}}
		for _, f := range a.Inputs {
			cp.Inputs = append(cp.Inputs, path.Join(a.InputMountPoint, f.RelPath))
		}
		out = append(out, cp)
	}
	return out, nil
}

// prepare runs every check of Submit and returns the job Submit would record.
func (s *Service) prepare(ctx context.Context, u jobs.User, in *jobinput.JobInput) (*jobs.Job, error) {
	site, ok := s.d.Sites.Site(in.Cluster)
	if !ok {
		return nil, ctserr.New(ctserr.CodeJobFlowUnavailable, "Job flow for cluster %s is not registered", in.Cluster)
	}
	if err := s.d.Sites.CheckUsable(ctx, site.Name); err != nil {
		return nil, err
	}
	if site.RequireStaff && !u.Staff {
		return nil, ctserr.New(ctserr.CodeUnauthorized, "To use the %s site, you must be a KBase staff member.", site.Name)
	}
	if err := checkLimits(site, in, s.cfg.MaxCPUHours); err != nil {
		return nil, err
	}
	if err := checkNoManifest(site, in); err != nil {
		return nil, err
	}
	img, err := s.d.Images.Resolve(ctx, in.Image)
	if err != nil {
		return nil, err
	}
	if img.RefdataID != "" {
		// A mount point, and the data staged at the job's site.
		if in.Params.RefdataMountPoint == "" && img.DefaultRefdataMountPoint == "" {
			return nil, ctserr.New(ctserr.CodeIllegalParameter,
				"Image %s requires reference data %s; a refdata mount point must be provided", img.NameWithDigest(), img.RefdataID)
		}
		if s.cfg.Refdata == nil {
			return nil, ctserr.New(ctserr.CodeUnsupportedOperation,
				"Image %s requires reference data %s, which this service does not stage", img.NameWithDigest(), img.RefdataID)
		}
		if err := s.cfg.Refdata.Ready(ctx, img.RefdataID, site.Name); err != nil {
			return nil, err
		}
	}
	if err := checkRefdataMount(img, in); err != nil {
		return nil, err
	}
	if err := checkCommands(img, in); err != nil {
		return nil, err
	}
	if s.rulesErr != nil {
		return nil, fmt.Errorf("access rules: %w", s.rulesErr)
	}
	scope := s.cfg.Access.For(u.Name)
	if err := s.checkOutputDir(ctx, scope, in.OutputDir); err != nil {
		return nil, err
	}
	sizes, err := s.checkInputs(ctx, scope, in)
	if err != nil {
		return nil, err
	}

	now := jobs.Now()
	j := &jobs.Job{
		ID:             uuid.NewString(),
		User:           u.Name,
		AdminMeta:      map[string]any{},
		State:          job.Created,
		UpdateTime:     now,
		Transitions:    []jobs.Transition{{State: job.Created, Time: now, TransID: uuid.NewString()}},
		Input:          *in,
		Image:          *img,
		InputFileCount: len(in.InputFiles),
		InputSizes:     sizes,
	}
	j.Image.URLs, j.Image.UsageNotes = nil, ""
	return j, nil
}

func checkLimits(site *sites.Site, in *jobinput.JobInput, maxCPUHours float64) error {
	if site.CPUsPerNode > 0 && in.CPUs > site.CPUsPerNode {
		return ctserr.New(ctserr.CodeIllegalParameter, "The maximum number of CPUs for site %s is %d vs %d submitted", site.Name, site.CPUsPerNode, in.CPUs)
	}
	if site.MaxRuntimeMin > 0 && in.RuntimeSeconds/60 > site.MaxRuntimeMin {
		return ctserr.New(ctserr.CodeIllegalParameter, "The maximum runtime for site %s is %s minutes vs %s minutes submitted", site.Name, fmtNum(site.MaxRuntimeMin), fmtNum(in.RuntimeSeconds/60))
	}
	if site.MemoryPerNodeGB > 0 && float64(in.Memory)/1e9 > site.MemoryPerNodeGB {
		return ctserr.New(ctserr.CodeIllegalParameter, "The maximum memory for site %s is %s GB vs %s GB submitted", site.Name, fmtNum(site.MemoryPerNodeGB), fmtNum(float64(in.Memory)/1e9))
	}
	if maxCPUHours > 0 {
		h := float64(in.CPUs) * float64(in.NumContainers) * in.RuntimeSeconds / 3600
		if h > maxCPUHours {
			return ctserr.New(ctserr.CodeIllegalParameter, "Job compute time of %s CPU hours is greater than the limit of %s", fmtNum(h), fmtNum(maxCPUHours))
		}
	}
	return nil
}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func checkNoManifest(site *sites.Site, in *jobinput.JobInput) error {
	isManifest := func(a args.Arg) bool { return a.Param != nil && a.Param.Type == args.TypeManifestFile }
	for _, a := range in.Params.Args {
		if isManifest(a) {
			return ctserr.New(ctserr.CodeUnsupportedOperation, "Manifest files are not currently supported for the %s job flow", site.Name)
		}
	}
	for _, e := range in.Params.Environment {
		if isManifest(e.Value) {
			return ctserr.New(ctserr.CodeUnsupportedOperation, "Manifest files are not currently supported for the %s job flow", site.Name)
		}
	}
	return nil
}

// checkRefdataMount checks the image's default reference data mount point, which the job
// uses when it names none, against the job's input and output mount points: the job's own
// mount points were checked against each other when it was decoded.
func checkRefdataMount(img *images.Image, in *jobinput.JobInput) error {
	if img.RefdataID == "" || in.Params.RefdataMountPoint != "" || img.DefaultRefdataMountPoint == "" {
		return nil
	}
	p := in.Params
	p.RefdataMountPoint = img.DefaultRefdataMountPoint
	for _, pr := range p.Validate() {
		if len(pr.Loc) == 1 && pr.Loc[0] == "refdata_mount_point" {
			return ctserr.New(ctserr.CodeIllegalParameter, "The image's reference data mount point %s cannot be used with this job: %s; "+
				"set params.refdata_mount_point", img.DefaultRefdataMountPoint, pr.Msg)
		}
	}
	return nil
}

// checkCommands generates every container's command line, as its assignment will, and checks
// it against the limits the container runtimes can start (args.CheckCommand).
func checkCommands(img *images.Image, in *jobinput.JobInput) error {
	rel, err := in.Placements()
	if err != nil {
		return err
	}
	for c, idxs := range in.FilesPerContainer() {
		paths := make([]string, len(idxs))
		for i, idx := range idxs {
			paths[i] = path.Join(in.Params.InputMountPoint, rel[idx])
		}
		cmd, env, err := args.Generate(img.Entrypoint, in.Params, c, paths)
		if err != nil {
			return fmt.Errorf("generate arguments of container %d: %w", c, err)
		}
		if err := args.CheckCommand(c, cmd, env); err != nil {
			return ctserr.New(ctserr.CodeIllegalParameter, "%s", err.Error())
		}
	}
	return nil
}

// checkOutputDir checks the user may write below dir (never the log folder), and, on an open
// site, that the service can (a test object).
func (s *Service) checkOutputDir(ctx context.Context, scope *access.Scope, dir string) error {
	d, err := s3path.ParseDir(dir)
	if err != nil {
		return ctserr.New(ctserr.CodeIllegalS3Path, "%s", err.Error())
	}
	if err := scope.CanWrite(d); err != nil {
		return err
	}
	if s.cfg.Access.Restricted() {
		return nil
	}
	return s.d.Objects.CheckWritable(ctx, dir)
}

// checkInputs heads every input, requires a CRC64/NVME, compares a user-supplied one and fills
// the checksum in. It returns the objects' sizes.
func (s *Service) checkInputs(ctx context.Context, scope *access.Scope, in *jobinput.JobInput) ([]int64, error) {
	for i, f := range in.InputFiles {
		p, err := s3path.ParseAt(f.File, i)
		if err != nil {
			return nil, ctserr.New(ctserr.CodeIllegalS3Path, "%s", err.Error())
		}
		if err := scope.CanRead(p); err != nil {
			var ce *ctserr.Error
			if errors.As(err, &ce) {
				return nil, ctserr.New(ce.Code, "Input file at index %d: %s", i, ce.Message)
			}
			return nil, err
		}
	}
	sizes := make([]int64, len(in.InputFiles))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.HeadConcurrency)
	for i := range in.InputFiles {
		f := &in.InputFiles[i]
		g.Go(func() error {
			meta, err := s.d.Objects.Head(gctx, f.File)
			if err != nil {
				return err
			}
			if meta.CRC64NVME == "" {
				return ctserr.New(ctserr.CodeIllegalParameter, "The S3 path '%s' does not have a CRC64/NVME checksum", f.File)
			}
			if f.CRC64NVME != "" && f.CRC64NVME != meta.CRC64NVME {
				return ctserr.New(ctserr.CodeChecksumMismatch, "The expected CRC64/NVME checksum '%s' for the path '%s' does not match the actual checksum '%s'", f.CRC64NVME, f.File, meta.CRC64NVME)
			}
			f.CRC64NVME = meta.CRC64NVME
			sizes[i] = meta.Size
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return sizes, nil
}
