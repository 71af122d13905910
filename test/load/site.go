package load

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"

	"github.com/kbase/cts/coordinator/devstack/auth2"
	"github.com/kbase/cts/test/demo"
	"github.com/kbase/cts/test/imagebuild"
	"github.com/kbase/cts/test/load/simlaunch"
	"github.com/kbase/cts/test/ports"
)

// The site's users, buckets and compute site.
const (
	UserName     = "load_user"
	AdminName    = "load_admin"
	ExecutorName = "load_executor"
	DataBucket   = "cts-data"
	LogBucket    = "cts-logs"
	SiteName     = "sim"
)

// The packages of the programs a site runs.
const (
	CoordinatorPkg = "./coordinator/cmd/cts-coordinator"
	SimLauncherPkg = "./test/load/cmd/cts-launcher-sim"
)

// SiteOptions configure StartSite.
type SiteOptions struct {
	// Dir holds the site's state, configuration and logs (required).
	Dir string
	// Bin is a folder holding cts-coordinator and cts-launcher-sim; when empty they are
	// built into Dir/bin.
	Bin string
	// Fleet configures the simulated agents (S3 is set by StartSite).
	Fleet FleetConfig
	// Replicas is the number of coordinator processes (default 1). With more than one, a
	// Balancer fronts them and is the service URL agents and clients use.
	Replicas int
	// Configure, when set, adjusts each coordinator's configuration (the YAML document as a
	// map) before it starts.
	Configure func(cfg map[string]any)
	// Inputs is how many input files to upload (one per container of the largest job).
	Inputs int
	// Log receives progress lines (nil: discarded).
	Log io.Writer
	// Profile, when set, is a folder for profiles: the stack process's CPU profile and its
	// MongoDB proxy's counters (see startStack), and the coordinators' CPU and heap profiles
	// (the coordinators serve /debug/pprof/; see Site.Profile).
	Profile string
}

// Site is a running benchmark site: the stack process, the coordinators (replicas, behind a
// Balancer when there are several), the control endpoint of the sim launcher, and the fleet
// of simulated agents.
type Site struct {
	Opts  SiteOptions
	Stack StackInfo
	// Coordinator is the first replica; Coordinators all of them.
	Coordinator  *Coordinator
	Coordinators []*Coordinator
	// Balancer fronts the replicas when there are several (nil with one).
	Balancer *Balancer
	// URL is the service root URL (the balancer's with several replicas).
	URL   string
	Fleet *Fleet
	Stats *Stats
	Watch *Watch
	API   *demo.Client
	S3    *s3.Client
	// UserToken, AdminToken and ExecutorToken are the auth2 tokens of the site's users.
	UserToken, AdminToken, ExecutorToken string
	// Image is the registered image jobs run; Inputs the uploaded input files ("bucket/key").
	Image  string
	Inputs []string

	// errs are the failures of the run's calls that the report lists (cancels).
	errs    []string
	stack   *stackProc
	control *http.Server
	// ports hold the coordinators' addresses from when they are chosen until Close: each
	// coordinator (a child process) binds its own seconds later, and nothing else can
	// meanwhile.
	ports  []*ports.Reservation
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func randToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}

// BuildBinaries builds cts-coordinator and cts-launcher-sim into dir from the module whose
// root is at or above the working directory.
func BuildBinaries(ctx context.Context, dir string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", dir+"/", CoordinatorPkg, SimLauncherPkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, b)
	}
	return nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("module root: no go.mod at or above the working directory")
		}
		dir = parent
	}
}

// StartSite starts a site. When it fails, what it started is stopped again.
func StartSite(ctx context.Context, o SiteOptions) (_ *Site, err error) {
	if o.Dir == "" {
		return nil, errors.New("start site: no folder")
	}
	if o.Inputs <= 0 {
		o.Inputs = 1
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	s := &Site{Opts: o, UserToken: randToken(), AdminToken: randToken(), ExecutorToken: randToken(), Stats: NewStats(), Watch: NewWatch()}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if o.Bin == "" {
		s.Opts.Bin = filepath.Join(o.Dir, "bin")
		fmt.Fprintln(o.Log, "building cts-coordinator and cts-launcher-sim")
		if err := BuildBinaries(ctx, s.Opts.Bin); err != nil {
			return nil, err
		}
	}
	fmt.Fprintln(o.Log, "starting the embedded stack")
	if o.Profile != "" {
		if err := os.MkdirAll(o.Profile, 0o755); err != nil {
			return nil, err
		}
	}
	s.stack, err = startStack(ctx, o.Dir, o.Profile, []auth2.User{
		{Name: UserName, Token: s.UserToken},
		{Name: AdminName, Token: s.AdminToken, CustomRoles: []string{"KBASE_STAFF", "CDM_TASK_SERVICE_ADMIN"}},
		{Name: ExecutorName, Token: s.ExecutorToken, CustomRoles: []string{"CTS_EXTERNAL_EXECUTOR"}},
	}, []string{DataBucket, LogBucket})
	if err != nil {
		return nil, err
	}
	s.Stack = s.stack.info
	stackPid, s3Pid := s.stack.pids()
	s.Watch.Add("stack", stackPid)
	if s3Pid != 0 {
		s.Watch.Add("s3", s3Pid)
	}
	s.Watch.Add("generator", os.Getpid())
	s.S3 = s3.New(s3.Options{
		Region: s.Stack.S3Region, BaseEndpoint: aws.String(s.Stack.S3Endpoint), UsePathStyle: true,
		Credentials:                credentials.NewStaticCredentialsProvider(s.Stack.S3AccessKey, s.Stack.S3SecretKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		HTTPClient:                 &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}},
	})

	// The fleet and the control endpoint the sim launcher plugins call.
	fc := o.Fleet
	fc.S3 = s.S3
	s.Fleet = NewFleet(fc, s.Stats)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.Fleet.Run(runCtx) }()
	go func() { defer s.wg.Done(); s.Watch.Run(runCtx) }()
	cln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.control = &http.Server{Handler: simlaunch.Handler(s.Fleet), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.control.Serve(cln) }()

	// Worker-side secret files, as on a worker node.
	tokenPath, secretPath := filepath.Join(o.Dir, "worker_token"), filepath.Join(o.Dir, "worker_s3_secret")
	if err := os.WriteFile(tokenPath, []byte(s.ExecutorToken+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(secretPath, []byte(s.Stack.S3SecretKey+"\n"), 0o600); err != nil {
		return nil, err
	}

	addrs := make([]string, o.Replicas)
	for i := range addrs {
		p, err := ports.Reserve("127.0.0.1")
		if err != nil {
			return nil, err
		}
		s.ports = append(s.ports, p)
		addrs[i] = p.Addr()
	}
	s.URL = "http://" + addrs[0]
	if o.Replicas > 1 {
		if s.Balancer, err = NewBalancer(addrs); err != nil {
			return nil, err
		}
		s.URL = s.Balancer.URL
	}
	s.API = &demo.Client{URL: s.URL, HC: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 2 * time.Minute}}
	env := []string{"CTS_S3_SECRET_KEY=" + s.Stack.S3SecretKey}
	cfg := map[string]any{
		"service_url": s.URL,
		"log_level":   "info",
		"auth":        map[string]any{"url": s.Stack.AuthURL},
		"mongo":       map[string]any{"uri": s.Stack.MongoURI},
		"kafka":       map[string]any{"brokers": s.Stack.Kafka},
		"s3":          map[string]any{"endpoint": s.Stack.S3Endpoint, "access_key": s.Stack.S3AccessKey, "region": s.Stack.S3Region},
		"jobs":        map[string]any{"log_dir": LogBucket + "/container_logs", "submit_interval": "1s"},
		"sites": []any{map[string]any{
			"name": SiteName, "plugin": filepath.Join(s.Opts.Bin, "cts-launcher-sim"),
			"plugin_config": map[string]any{"control_url": "http://" + cln.Addr().String()},
			"cpus_per_node": 64, "memory_per_node_gb": 256, "max_runtime_min": 24 * 60,
			"notes":      []string{"Simulated agents of the load benchmark."},
			"worker_env": map[string]any{"TOKEN_PATH": tokenPath, "S3_SECRET_PATH": secretPath},
		}},
	}
	// The admins' /debug/pprof/: profiles (-profile) and snapshots (Site.Snapshot). It costs
	// nothing until asked.
	cfg["observability"] = map[string]any{"pprof": true}
	if o.Configure != nil {
		o.Configure(cfg)
	}
	for i, addr := range addrs {
		name := "coordinator"
		if o.Replicas > 1 {
			name = fmt.Sprintf("coordinator-%d", i)
		}
		fmt.Fprintf(o.Log, "starting %s on %s\n", name, addr)
		c, err := startCoordinator(ctx, name, addr, filepath.Join(s.Opts.Bin, "cts-coordinator"), o.Dir, cfg, env)
		if err != nil {
			return nil, err
		}
		s.Coordinators = append(s.Coordinators, c)
		s.Watch.Add(c.Name, c.Pid())
	}
	s.Coordinator = s.Coordinators[0]
	if err := s.registerImage(ctx); err != nil {
		return nil, err
	}
	if err := s.uploadInputs(ctx, o.Inputs); err != nil {
		return nil, err
	}
	return s, nil
}

// registerImage pushes a one-file image to the stack's registry and registers it.
func (s *Site) registerImage(ctx context.Context) error {
	img, err := imagebuild.Build([]imagebuild.File{{Path: "/usr/bin/sim", Mode: 0o755, Data: []byte("#!/bin/sh\n")}},
		[]string{"/usr/bin/sim"}, []string{"PATH=/usr/bin:/bin"})
	if err != nil {
		return fmt.Errorf("build image: %w", err)
	}
	ref := s.Stack.Registry + "/cts/sim:1"
	if _, err := imagebuild.Push(ctx, img, ref); err != nil {
		return fmt.Errorf("push image: %w", err)
	}
	if err := s.API.Do(ctx, http.MethodPost, "/admin/images/"+ref, s.AdminToken, nil, nil); err != nil {
		return fmt.Errorf("register image: %w", err)
	}
	s.Image = ref
	return nil
}

// uploadInputs uploads n small input files with their CRC64/NVME.
func (s *Site) uploadInputs(ctx context.Context, n int) error {
	s.Inputs = make([]string, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range n {
		g.Go(func() error {
			key := fmt.Sprintf("load/inputs/in-%05d.fna", i)
			if _, err := demo.PutWithCRC(gctx, s.S3, DataBucket, key, []byte(fmt.Sprintf(">in%d\nACGTACGTGGCC\n", i))); err != nil {
				return fmt.Errorf("upload input %s: %w", key, err)
			}
			s.Inputs[i] = DataBucket + "/" + key
			return nil
		})
	}
	return g.Wait()
}

// JobBody is the submit body of a job of n containers (n ≤ len(Inputs)), one input each,
// writing below outDir in the data bucket.
func (s *Site) JobBody(n int, outDir string) map[string]any {
	return map[string]any{
		"cluster": SiteName, "image": s.Image, "input_files": s.Inputs[:n],
		"output_dir":     DataBucket + "/" + strings.TrimSuffix(outDir, "/") + "/",
		"num_containers": n, "cpus": 1, "memory": "100MB", "runtime": "PT30M",
		"params": map[string]any{"args": []any{
			"--container", map[string]any{"type": "container_number"},
			map[string]any{"type": "input_files", "input_files_format": "space_separated_list"},
		}},
	}
}

// Submit submits a job of n containers and returns its ID.
func (s *Site) Submit(ctx context.Context, n int, outDir string) (string, error) {
	var resp struct {
		JobID string `json:"job_id"`
	}
	if err := s.API.Do(ctx, http.MethodPost, "/jobs", s.UserToken, s.JobBody(n, outDir), &resp); err != nil {
		return "", err
	}
	return resp.JobID, nil
}

// State returns the state of job id.
func (s *Site) State(ctx context.Context, id string) (string, error) {
	var st struct {
		State string `json:"state"`
	}
	err := s.retry(ctx, http.MethodGet, "/jobs/"+id+"/status", s.UserToken, &st)
	return st.State, err
}

// retry makes an idempotent call (a read, a cancel) as a client following the service's 503
// answer would: it tries again every 2 s, up to 10 times, while the service answers 503 (a
// dependency such as MongoDB did not answer in time).
func (s *Site) retry(ctx context.Context, method, path, token string, out any) error {
	for i := 0; ; i++ {
		err := s.API.Do(ctx, method, path, token, nil, out)
		var ae *demo.APIError
		if err == nil || i == 9 || !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
			return err
		}
		sleepCtx(ctx, 2*time.Second)
	}
}

// Close stops the coordinators, the balancer, the control endpoint, the fleet and the stack.
func (s *Site) Close() {
	for _, c := range s.Coordinators {
		c.Stop()
	}
	if s.Balancer != nil {
		s.Balancer.Close()
	}
	if s.control != nil {
		_ = s.control.Close()
	}
	if s.cancel != nil {
		s.cancel()
		s.wg.Wait()
	}
	if s.Fleet != nil {
		s.Fleet.Drop(1 << 30)
	}
	if s.stack != nil {
		s.stack.stop()
	}
	for _, p := range s.ports {
		_ = p.Close()
	}
}
