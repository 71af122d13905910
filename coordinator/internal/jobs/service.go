package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/images"
	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/shared/args"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/launcher"
	"github.com/kbase/cts/shared/protocol"
)

// ObjectMeta is what the service needs to know of an S3 object.
type ObjectMeta struct {
	Size      int64
	CRC64NVME string // "" when the object has no CRC64/NVME
}

// Objects is the S3 access the service needs. Errors that are the caller's fault (missing
// object, access denied) are *ctserr.Error.
type Objects interface {
	// Head returns the object's size and CRC64/NVME (HeadObject with ChecksumMode enabled).
	Head(ctx context.Context, s3path string) (ObjectMeta, error)
	// CheckWritable proves the service can write below dir ("bucket/prefix/") by writing and
	// deleting a test object.
	CheckWritable(ctx context.Context, dir string) error
}

// ImageResolver finds the registered image a job names.
type ImageResolver interface {
	Resolve(ctx context.Context, ref string) (*images.Image, error)
}

// Launcher is the part of a site's launcher the service uses.
type Launcher interface {
	Submit(ctx context.Context, req launcher.SubmitRequest) (launcher.SubmitResponse, error)
	Cancel(ctx context.Context, ref launcher.JobRef) error
}

// RefdataChecker reports whether reference data is ready at a site: nil, or a *ctserr.Error
// (40060 unknown, 30400 not staged there yet).
type RefdataChecker interface {
	Ready(ctx context.Context, refdataID, site string) error
}

// Notifier is told that new transitions wait in the outbox.
type Notifier interface{ Poke() }

// Site is a compute site ("cluster" in the CTS API) and its limits.
type Site struct {
	Name            string
	Launcher        Launcher
	CPUsPerNode     int
	MemoryPerNodeGB float64
	MaxRuntimeMin   float64
	// RequireStaff restricts the site to users with the staff role.
	RequireStaff bool
	// WorkerEnv is added to the environment of every agent of the site (TOKEN_PATH,
	// S3_SECRET_PATH, REFDATA_HOST_PATH, ...: file paths on the workers, never secrets).
	WorkerEnv map[string]string
	// Nodes and Notes are shown by GET /sites (nil nodes: variable).
	Nodes *int
	Notes []string
}

// Config is the service's configuration.
type Config struct {
	// ServiceURL is the root URL agents use to reach the coordinator.
	ServiceURL string
	// S3URL and S3AccessKey are handed to agents (the secret is a file on the worker).
	S3URL       string
	S3AccessKey string
	S3Insecure  bool
	// LogDir is "bucket/prefix/" under which container logs go, in <LogDir><job_id>/.
	LogDir string
	// AllowedPaths, when set, are the only S3 prefixes jobs may read and write.
	AllowedPaths []string
	// MaxCPUHours caps cpus × containers × runtime.
	MaxCPUHours float64
	// HeadConcurrency bounds the HeadObject calls of one submit.
	HeadConcurrency int
	// SubmitInterval is how often the submitter looks for created jobs without a poke.
	SubmitInterval time.Duration
	Sites          []Site
	// Refdata tells whether reference data is staged at a site (nil: images that need
	// reference data are refused).
	Refdata RefdataChecker
}

// User is the caller of a service method.
type User struct {
	Name  string
	Staff bool
	Admin bool
}

// Service runs jobs. It is safe for concurrent use.
type Service struct {
	cfg     Config
	store   Store
	objects Objects
	images  ImageResolver
	notify  Notifier
	log     *slog.Logger
	sites   map[string]*Site
	now     func() time.Time
	wake    chan struct{}

	mu       sync.Mutex
	watchers map[string][]chan protocol.Cancel

	// siteMu guards the cached active flags of the sites (see siteStates).
	siteMu     sync.Mutex
	siteActive map[string]bool
	siteRead   time.Time
}

// New returns a Service.
func New(cfg Config, store Store, objects Objects, imgs ImageResolver, notify Notifier, log *slog.Logger) *Service {
	if cfg.HeadConcurrency <= 0 {
		cfg.HeadConcurrency = 10
	}
	if cfg.SubmitInterval <= 0 {
		cfg.SubmitInterval = 5 * time.Second
	}
	if cfg.LogDir != "" && !strings.HasSuffix(cfg.LogDir, "/") {
		cfg.LogDir += "/"
	}
	// An allowed path is a directory: "bucket/out" must not admit "bucket/outside/".
	cfg.AllowedPaths = slices.Clone(cfg.AllowedPaths)
	for i, p := range cfg.AllowedPaths {
		if !strings.HasSuffix(p, "/") {
			cfg.AllowedPaths[i] = p + "/"
		}
	}
	s := &Service{
		cfg: cfg, store: store, objects: objects, images: imgs, notify: notify, log: log,
		sites:    map[string]*Site{},
		now:      func() time.Time { return time.Now().UTC().Truncate(time.Millisecond) },
		wake:     make(chan struct{}, 1),
		watchers: map[string][]chan protocol.Cancel{},
	}
	for i := range cfg.Sites {
		s.sites[cfg.Sites[i].Name] = &cfg.Sites[i]
	}
	return s
}

// SiteNames lists the configured sites.
func (s *Service) SiteNames() []string {
	var out []string
	for _, st := range s.cfg.Sites {
		out = append(out, st.Name)
	}
	return out
}

// Submit checks a validated job input against the site, the image registry and S3, records
// the job and returns its ID. Nothing is recorded when any check fails.
func (s *Service) Submit(ctx context.Context, u User, in *jobinput.JobInput) (string, error) {
	site, ok := s.sites[in.Cluster]
	if !ok {
		return "", ctserr.New(ctserr.CodeJobFlowUnavailable, "Job flow for cluster %s is not registered", in.Cluster)
	}
	if err := s.checkSiteActive(ctx, site.Name); err != nil {
		return "", err
	}
	if site.RequireStaff && !u.Staff {
		return "", ctserr.New(ctserr.CodeUnauthorized, "To use the %s site, you must be a KBase staff member.", site.Name)
	}
	if err := checkLimits(site, in, s.cfg.MaxCPUHours); err != nil {
		return "", err
	}
	if err := checkNoManifest(site, in); err != nil {
		return "", err
	}
	img, err := s.images.Resolve(ctx, in.Image)
	if err != nil {
		return "", err
	}
	if img.RefdataID != "" {
		// Reference §2.3 step 5: a mount point, and the data staged at the job's site.
		if in.Params.RefdataMountPoint == "" && img.DefaultRefdataMountPoint == "" {
			return "", ctserr.New(ctserr.CodeIllegalParameter,
				"Image %s requires reference data %s; a refdata mount point must be provided", img.NameWithDigest(), img.RefdataID)
		}
		if s.cfg.Refdata == nil {
			return "", ctserr.New(ctserr.CodeUnsupportedOperation,
				"Image %s requires reference data %s, which this service does not stage", img.NameWithDigest(), img.RefdataID)
		}
		if err := s.cfg.Refdata.Ready(ctx, img.RefdataID, site.Name); err != nil {
			return "", err
		}
	}
	if err := s.checkOutputDir(ctx, in.OutputDir); err != nil {
		return "", err
	}
	sizes, err := s.checkInputs(ctx, in)
	if err != nil {
		return "", err
	}

	now := s.now()
	j := &Job{
		ID:             uuid.NewString(),
		User:           u.Name,
		AdminMeta:      map[string]any{},
		State:          job.Created,
		UpdateTime:     now,
		Transitions:    []Transition{{State: job.Created, Time: now, TransID: uuid.NewString()}},
		Input:          *in,
		Image:          *img,
		InputFileCount: len(in.InputFiles),
		InputSizes:     sizes,
	}
	j.Image.URLs, j.Image.UsageNotes = nil, ""
	subs := make([]SubJob, in.NumContainers)
	for i := range subs {
		subs[i] = SubJob{
			JobID: j.ID, SubID: i, State: job.DownloadSubmitted, UpdateTime: now,
			Transitions: []Transition{{State: job.Created, Time: now}, {State: job.DownloadSubmitted, Time: now}},
		}
	}
	if err := s.store.CreateJob(ctx, j, subs); err != nil {
		return "", fmt.Errorf("save job: %w", err)
	}
	s.log.InfoContext(ctx, "job created", "job_id", j.ID, "user", u.Name, "cluster", in.Cluster, "containers", in.NumContainers)
	s.notify.Poke()
	s.pokeSubmitter()
	return j.ID, nil
}

func checkLimits(site *Site, in *jobinput.JobInput, maxCPUHours float64) error {
	if site.CPUsPerNode > 0 && in.CPUs > site.CPUsPerNode {
		return ctserr.New(ctserr.CodeIllegalParameter, "The maximum number of CPUs for site %s is %d vs %d submitted", site.Name, site.CPUsPerNode, in.CPUs)
	}
	if site.MaxRuntimeMin > 0 && in.RuntimeSeconds/60 > site.MaxRuntimeMin {
		return ctserr.New(ctserr.CodeIllegalParameter, "The maximum runtime for site %s is %s minutes vs %s submitted", site.Name, fmtNum(site.MaxRuntimeMin), fmtNum(in.RuntimeSeconds/60))
	}
	if site.MemoryPerNodeGB > 0 && float64(in.Memory)/1e9 > site.MemoryPerNodeGB {
		return ctserr.New(ctserr.CodeIllegalParameter, "The maximum memory for site %s is %s GB vs %s submitted", site.Name, fmtNum(site.MemoryPerNodeGB), fmtNum(float64(in.Memory)/1e9))
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

func checkNoManifest(site *Site, in *jobinput.JobInput) error {
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

func (s *Service) allowed(p string) bool {
	if len(s.cfg.AllowedPaths) == 0 {
		return true
	}
	for _, a := range s.cfg.AllowedPaths {
		if strings.HasPrefix(p, a) {
			return true
		}
	}
	return false
}

func (s *Service) checkOutputDir(ctx context.Context, dir string) error {
	if s.cfg.LogDir != "" && strings.HasPrefix(dir, s.cfg.LogDir) {
		return ctserr.New(ctserr.CodeS3PathInaccessible, "Jobs may not write to the log directory %s", s.cfg.LogDir)
	}
	if len(s.cfg.AllowedPaths) > 0 {
		if !s.allowed(dir) {
			return ctserr.New(ctserr.CodeS3PathInaccessible, "Output directory %s is not in the allowed S3 paths", dir)
		}
		return nil
	}
	return s.objects.CheckWritable(ctx, dir)
}

// checkInputs heads every input, requires a CRC64/NVME, compares a user-supplied one and fills
// the checksum in. It returns the objects' sizes.
func (s *Service) checkInputs(ctx context.Context, in *jobinput.JobInput) ([]int64, error) {
	for i, f := range in.InputFiles {
		if !s.allowed(f.File) {
			return nil, ctserr.New(ctserr.CodeS3PathInaccessible, "Input file %s at index %d is not in the allowed S3 paths", f.File, i)
		}
	}
	sizes := make([]int64, len(in.InputFiles))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.HeadConcurrency)
	for i := range in.InputFiles {
		f := &in.InputFiles[i]
		g.Go(func() error {
			meta, err := s.objects.Head(gctx, f.File)
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

// Get returns a job the user may see: its owner's, or any for an admin.
func (s *Service) Get(ctx context.Context, u User, id string) (*Job, error) {
	j, err := s.store.GetJob(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, ctserr.New(ctserr.CodeNoSuchJob, "No job with ID '%s' exists", id)
	}
	if err != nil {
		return nil, err
	}
	if j.User != u.Name && !u.Admin {
		return nil, ctserr.New(ctserr.CodeUnauthorized, "User %s may not access job %s", u.Name, id)
	}
	return j, nil
}

// SubJobs returns a job's containers.
func (s *Service) SubJobs(ctx context.Context, id string) ([]SubJob, error) {
	return s.store.GetSubJobs(ctx, id)
}

// transition moves a job from any state that may precede to, and pokes the notifier.
func (s *Service) transition(ctx context.Context, id string, to job.State, at time.Time, u JobUpdate) (*Job, error) {
	return s.transitionFrom(ctx, id, job.Predecessors(to), to, at, u)
}

// transitionFrom moves a job from one of the states from, and pokes the notifier.
func (s *Service) transitionFrom(ctx context.Context, id string, from []job.State, to job.State, at time.Time, u JobUpdate) (*Job, error) {
	if at.IsZero() {
		at = s.now()
	}
	j, err := s.store.TransitionJob(ctx, id, from, Transition{State: to, Time: at.UTC().Truncate(time.Millisecond), TransID: uuid.NewString()}, u)
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "job transition", "job_id", id, "state", to)
	s.notify.Poke()
	return j, nil
}

func (s *Service) pokeSubmitter() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// RunSubmitter hands created jobs to their site's launcher until ctx ends. It is durable:
// it works from the store, so a job saved before a crash is submitted after the restart, and
// the launcher's idempotent Submit makes a crash between submitting and recording harmless.
func (s *Service) RunSubmitter(ctx context.Context) error {
	t := time.NewTicker(s.cfg.SubmitInterval)
	defer t.Stop()
	for {
		if err := s.submitCreated(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "submitter pass failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.wake:
		}
	}
}

// submitCreated submits created jobs and finishes canceling ones.
func (s *Service) submitCreated(ctx context.Context) error {
	var errs []error
	js, err := s.store.JobsInState(ctx, job.Created, 100)
	if err != nil {
		return fmt.Errorf("find created jobs: %w", err)
	}
	for _, j := range js {
		if err := s.submitOne(ctx, j); err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", j.ID, err))
		}
	}
	cs, err := s.store.JobsInState(ctx, job.Canceling, 100)
	if err != nil {
		return fmt.Errorf("find canceling jobs: %w", err)
	}
	for _, j := range cs {
		if err := s.finishCancel(ctx, j); err != nil {
			errs = append(errs, fmt.Errorf("cancel job %s: %w", j.ID, err))
		}
	}
	return errors.Join(errs...)
}

// Cancel moves a job the user owns (or any job, for an admin) to canceling; the submitter loop
// then stops its agents and records it canceled.
func (s *Service) Cancel(ctx context.Context, u User, id string) error {
	if _, err := s.Get(ctx, u, id); err != nil {
		return err
	}
	_, err := s.transition(ctx, id, job.Canceling, time.Time{}, JobUpdate{})
	if errors.Is(err, ErrConflict) {
		return ctserr.New(ctserr.CodeNoSuchJob, "No job with ID '%s' not in states ['canceled', 'canceling', 'complete', 'error'] exists", id)
	}
	if err != nil {
		return err
	}
	s.pokeSubmitter()
	return nil
}

func (s *Service) finishCancel(ctx context.Context, j *Job) error {
	s.broadcastCancel(j.ID)
	if j.Launch != nil {
		if site, ok := s.sites[j.Launch.Site]; ok {
			if err := site.Launcher.Cancel(ctx, launcher.JobRef{JobID: j.ID, Handle: j.Launch.Handle}); err != nil && !errors.Is(err, launcher.ErrNotFound) {
				return fmt.Errorf("launcher cancel: %w", err)
			}
		}
	}
	_, err := s.transition(ctx, j.ID, job.Canceled, time.Time{}, JobUpdate{})
	if errors.Is(err, ErrConflict) {
		return nil // ended otherwise meanwhile
	}
	return err
}

// WatchCancel registers interest in a job's cancellation; the channel receives one Cancel when
// the job is canceling. Call the returned function to unregister.
func (s *Service) WatchCancel(jobID string) (<-chan protocol.Cancel, func()) {
	ch := make(chan protocol.Cancel, 1)
	s.mu.Lock()
	s.watchers[jobID] = append(s.watchers[jobID], ch)
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		ws := s.watchers[jobID]
		for i, w := range ws {
			if w == ch {
				s.watchers[jobID] = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(s.watchers[jobID]) == 0 {
			delete(s.watchers, jobID)
		}
	}
}

func (s *Service) broadcastCancel(jobID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.watchers[jobID] {
		select {
		case ch <- protocol.Cancel{Reason: "the job was canceled"}:
		default:
		}
	}
}

// WorkerEnv is the environment every agent of a job gets (the CTS worker contract, reference
// §6.3); the launcher adds CONTAINER_NUMBER and the attempt.
func (s *Service) WorkerEnv(j *Job, site *Site) map[string]string {
	env := map[string]string{
		"JOB_ID":            j.ID,
		"SERVICE_ROOT_URL":  s.cfg.ServiceURL,
		"S3_URL":            s.cfg.S3URL,
		"S3_ACCESS_KEY":     s.cfg.S3AccessKey,
		"S3_ERROR_LOG_PATH": strings.TrimSuffix(s.cfg.LogDir, "/") + "/" + j.ID,
	}
	if s.cfg.S3Insecure {
		env["S3_INSECURE"] = "TRUE"
	}
	for k, v := range site.WorkerEnv {
		env[k] = v
	}
	return env
}

func (s *Service) submitOne(ctx context.Context, j *Job) error {
	site, ok := s.sites[j.Input.Cluster]
	if !ok {
		_, err := s.transition(ctx, j.ID, job.Error, time.Time{}, JobUpdate{
			Error: "An unexpected error occurred.", AdminError: fmt.Sprintf("site %q is not configured", j.Input.Cluster),
		})
		return err
	}
	resp, err := site.Launcher.Submit(ctx, s.launchRequest(j, site, 0))
	if err != nil {
		// The launcher may be down: leave the job in created, the next pass retries.
		return fmt.Errorf("launcher submit: %w", err)
	}
	_, err = s.transition(ctx, j.ID, job.DownloadSubmitted, time.Time{}, JobUpdate{Launch: &Launch{Site: site.Name, Handle: resp.Handle, LaunchedAt: s.now()}})
	if errors.Is(err, ErrConflict) {
		// Canceled meanwhile: take the containers back.
		if cerr := site.Launcher.Cancel(ctx, launcher.JobRef{JobID: j.ID, Handle: resp.Handle}); cerr != nil {
			return fmt.Errorf("cancel after lost submit race: %w", cerr)
		}
		return nil
	}
	if err != nil {
		return err
	}
	// Agents may have reported before the job was recorded as submitted.
	return s.fold(ctx, j.ID)
}

// launchRequest is the launcher request for one attempt of a job.
func (s *Service) launchRequest(j *Job, site *Site, attempt int) launcher.SubmitRequest {
	return launcher.SubmitRequest{
		JobID: j.ID, Attempt: attempt, Containers: j.Input.NumContainers, CPUs: j.Input.CPUs,
		MemoryBytes: j.Input.Memory, RuntimeSeconds: j.Input.RuntimeSeconds, DiskBytes: diskEstimate(j),
		User: j.User, BatchName: "cts-" + j.ID, Env: s.WorkerEnv(j, site),
	}
}

// diskEstimate asks for room for the inputs twice over (inputs and outputs) plus 1 GiB.
func diskEstimate(j *Job) int64 {
	var total int64
	for _, n := range j.InputSizes {
		total += n
	}
	per := total / int64(max(1, j.Input.NumContainers))
	return 2*per + 1<<30
}

// Assignment builds what the agent of one container needs. It refuses (with a
// *ctserr.Error) unknown jobs and containers and jobs that are already over.
func (s *Service) Assignment(ctx context.Context, h protocol.Hello) (*protocol.Assignment, error) {
	j, err := s.store.GetJob(ctx, h.JobID)
	if errors.Is(err, ErrNotFound) {
		return nil, ctserr.New(ctserr.CodeNoSuchJob, "No job with ID '%s' exists", h.JobID)
	}
	if err != nil {
		return nil, err
	}
	// A canceling job still takes its agents' hellos: an agent that reconnects during the
	// cancel must be able to report how its container ended.
	if j.State.Terminal() {
		return nil, ctserr.New(ctserr.CodeInvalidJobState, "Job %s is %s", j.ID, j.State)
	}
	if h.Container < 0 || h.Container >= j.Input.NumContainers {
		return nil, ctserr.New(ctserr.CodeNoSuchSubJob, "Job %s has no container %d", j.ID, h.Container)
	}
	subs, err := s.store.GetSubJobs(ctx, j.ID)
	if err != nil {
		return nil, err
	}
	var sj *SubJob
	for i := range subs {
		if subs[i].SubID == h.Container {
			sj = &subs[i]
		}
	}
	if sj == nil {
		return nil, ctserr.New(ctserr.CodeNoSuchSubJob, "Job %s has no container %d", j.ID, h.Container)
	}
	if sj.State.Terminal() {
		return nil, ctserr.New(ctserr.CodeInvalidJobState, "Container %d of job %s is %s", h.Container, j.ID, sj.State)
	}
	return BuildAssignment(j, h.Container, s.cfg.LogDir, nextSeq(sj, h.Attempt))
}

func nextSeq(sj *SubJob, attempt string) int64 {
	if sj.Attempt == attempt {
		return sj.LastSeq + 1
	}
	return 1
}

// BuildAssignment computes a container's assignment from its job: its slice of the inputs
// with their container paths, the generated command and environment, mounts and limits.
func BuildAssignment(j *Job, container int, logDir string, next int64) (*protocol.Assignment, error) {
	in := &j.Input
	rel, err := in.Placements()
	if err != nil {
		return nil, err
	}
	slices := in.FilesPerContainer()
	if container >= len(slices) {
		return nil, fmt.Errorf("container %d out of range", container)
	}
	var inputs []protocol.InputFile
	var paths []string
	for _, idx := range slices[container] {
		f := in.InputFiles[idx]
		var size int64
		if idx < len(j.InputSizes) {
			size = j.InputSizes[idx]
		}
		inputs = append(inputs, protocol.InputFile{S3Path: f.File, CRC64NVME: f.CRC64NVME, Size: size, RelPath: rel[idx]})
		paths = append(paths, path.Join(in.Params.InputMountPoint, rel[idx]))
	}
	cmd, env, err := args.Generate(j.Image.Entrypoint, in.Params, container, paths)
	if err != nil {
		return nil, fmt.Errorf("generate arguments: %w", err)
	}
	refMount := in.Params.RefdataMountPoint
	if refMount == "" {
		refMount = j.Image.DefaultRefdataMountPoint
	}
	a := &protocol.Assignment{
		JobID: j.ID, Container: container, Image: j.Image.NameWithDigest(), Command: cmd, Env: env,
		Inputs: inputs, InputMountPoint: in.Params.InputMountPoint, OutputMountPoint: in.Params.OutputMountPoint,
		OutputDir: in.OutputDir, Declobber: in.Params.Declobber,
		LogDir: strings.TrimSuffix(logDir, "/") + "/" + j.ID + "/",
		CPUs:   in.CPUs, MemoryBytes: in.Memory, RuntimeSeconds: in.RuntimeSeconds,
		NextSeq: next,
	}
	if j.Image.RefdataID != "" {
		a.RefdataID, a.RefdataMountPoint = j.Image.RefdataID, refMount
	}
	return a, nil
}

// ErrRejected marks an agent event the coordinator will not apply (illegal for the
// container's state); the agent must stop reporting.
var ErrRejected = errors.New("event rejected")

// ApplyEvent applies one agent event to its container exactly once and folds the result into
// the job. It returns nil for an event that was already applied (a resend), and an error
// wrapping ErrRejected for an event that can never apply.
func (s *Service) ApplyEvent(ctx context.Context, jobID string, container int, attempt string, ev protocol.Event) error {
	if !ev.State.Valid() || ev.State == job.Created || ev.State == job.DownloadSubmitted {
		return fmt.Errorf("%w: state %q", ErrRejected, ev.State)
	}
	if (ev.State == job.UploadSubmitting || ev.State == job.ErrorProcessingSubmitting) && ev.ExitCode == nil {
		return fmt.Errorf("%w: %s needs the container's exit code", ErrRejected, ev.State)
	}
	var from []job.State
	for _, st := range job.States {
		if job.CanTransitionContainer(st, ev.State) {
			from = append(from, st)
		}
	}
	at := ev.Time.UTC().Truncate(time.Millisecond)
	if at.IsZero() || at.After(s.now().Add(time.Minute)) {
		at = s.now()
	}
	u := SubJobUpdate{ExitCode: ev.ExitCode, Error: ev.Error, AdminError: ev.AdminError, Traceback: ev.Traceback}
	for _, o := range ev.Outputs {
		u.Outputs = append(u.Outputs, Output{File: o.File, CRC64NVME: o.CRC64NVME})
	}
	if ev.State == job.Error && u.AdminError == "" {
		u.AdminError = "the agent reported an error without details"
	}
	_, err := s.store.TransitionSubJob(ctx, jobID, container, from, Transition{State: ev.State, Time: at}, u, Seq{Attempt: attempt, Seq: ev.Seq})
	if errors.Is(err, ErrConflict) {
		subs, gerr := s.store.GetSubJobs(ctx, jobID)
		if gerr != nil {
			return gerr
		}
		for _, sj := range subs {
			if sj.SubID == container && sj.Attempt == attempt && sj.LastSeq >= ev.Seq {
				// Already applied: a resend. Fold anyway: the fold after the first
				// application may have failed (the agent was then not acknowledged and
				// resends), and without this fold a job whose last event it was never ends.
				return s.fold(ctx, jobID)
			}
			if sj.SubID == container {
				return fmt.Errorf("%w: container %d of job %s is %s, cannot move to %s", ErrRejected, container, jobID, sj.State, ev.State)
			}
		}
		return fmt.Errorf("%w: no container %d in job %s", ErrRejected, container, jobID)
	}
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: no container %d in job %s", ErrRejected, container, jobID)
	}
	if err != nil {
		return err
	}
	return s.fold(ctx, jobID)
}

// Touch records a heartbeat of a container's agent.
func (s *Service) Touch(ctx context.Context, jobID string, container int, attempt string) error {
	return s.store.TouchSubJob(ctx, jobID, container, attempt, s.now())
}

// fold advances the job as far as its containers allow. Concurrent folds of one job are safe:
// transitions are conditional, and a loser re-reads and recomputes.
func (s *Service) fold(ctx context.Context, id string) error {
	for range 20 {
		j, err := s.store.GetJob(ctx, id)
		if err != nil {
			return err
		}
		subs, err := s.store.GetSubJobs(ctx, id)
		if err != nil {
			return err
		}
		f := NextFold(j.State, subs)
		if f.To == "" {
			return nil
		}
		var u JobUpdate
		if f.Terminal {
			u, f.To = s.terminalUpdate(ctx, j, subs, f.To)
		}
		// Conditional on the state the fold was computed from: Error may follow canceling,
		// so with Predecessors(Error) a cancel accepted meanwhile would be overwritten.
		_, err = s.transitionFrom(ctx, id, []job.State{j.State}, f.To, f.Time, u)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return err
		}
		if f.To.Terminal() {
			s.log.InfoContext(ctx, "job ended", "job_id", id, "state", f.To, "error", u.AdminError)
			return nil
		}
	}
	return fmt.Errorf("fold job %s: too many concurrent updates", id)
}

const (
	userErrExit       = "At least one container exited with a non-zero error code. Please examine the logs for details."
	userErrUnexpected = "An unexpected error occurred."
)

// terminalUpdate computes the fields of a job's terminal transition: on success the verified
// union of the containers' outputs (which may still turn the job into an error), on failure
// the user and admin errors.
func (s *Service) terminalUpdate(ctx context.Context, j *Job, subs []SubJob, to job.State) (JobUpdate, job.State) {
	// Logs exist only for containers that started.
	logPath := ""
	for _, sj := range subs {
		if _, ran := reachedAt(sj, [2]job.State{job.JobSubmitted}); ran {
			logPath = strings.TrimSuffix(s.cfg.LogDir, "/") + "/" + j.ID
		}
	}
	if to == job.Complete {
		outs, err := s.verifyOutputs(ctx, subs)
		if err != nil {
			return JobUpdate{Error: "The job's output files failed verification.", AdminError: err.Error(), LogPath: logPath}, job.Error
		}
		if len(outs) == 0 {
			msg := "The job produced no output files"
			return JobUpdate{Error: msg, AdminError: msg, LogPath: logPath}, job.Error
		}
		n := len(outs)
		return JobUpdate{Outputs: outs, OutputFileCount: &n, LogPath: logPath}, job.Complete
	}
	var admin []string
	userErr := ""
	nonZero := false
	for _, sj := range subs {
		if sj.ExitCode != nil && *sj.ExitCode != 0 {
			nonZero = true
		}
		if sj.AdminError != "" {
			admin = append(admin, fmt.Sprintf("container %d: %s", sj.SubID, sj.AdminError))
		}
		if userErr == "" && sj.Error != "" {
			userErr = sj.Error
		}
	}
	switch {
	case nonZero:
		userErr = userErrExit
	case userErr == "":
		userErr = userErrUnexpected
	}
	if len(admin) == 0 {
		admin = []string{"Check subjobs / containers for admin errors"}
	}
	return JobUpdate{Error: userErr, AdminError: strings.Join(admin, "; "), LogPath: logPath}, job.Error
}

// verifyOutputs checks every output the containers reported against S3: it must exist with the
// CRC64/NVME the agent computed while uploading.
func (s *Service) verifyOutputs(ctx context.Context, subs []SubJob) ([]Output, error) {
	byFile := map[string]Output{}
	var order []string
	for _, sj := range subs {
		for _, o := range sj.Outputs {
			if prev, ok := byFile[o.File]; ok {
				if prev.CRC64NVME != o.CRC64NVME {
					return nil, fmt.Errorf("containers wrote different contents to %s", o.File)
				}
				continue
			}
			byFile[o.File] = o
			order = append(order, o.File)
		}
	}
	outs := make([]Output, len(order))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.HeadConcurrency)
	for i, f := range order {
		g.Go(func() error {
			meta, err := s.objects.Head(gctx, f)
			if err != nil {
				return fmt.Errorf("check output %s: %w", f, err)
			}
			if meta.CRC64NVME != byFile[f].CRC64NVME {
				return fmt.Errorf("output %s has CRC64/NVME %q in S3, but the agent uploaded %q", f, meta.CRC64NVME, byFile[f].CRC64NVME)
			}
			outs[i] = byFile[f]
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return outs, nil
}
