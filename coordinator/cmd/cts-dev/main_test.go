package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kbase/cts/coordinator/client"
	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/shared/checksum"
	"github.com/kbase/cts/test/ports"
	"github.com/kbase/cts/test/testsite"
)

func TestMain(m *testing.M) { testsite.Main(m) }

// devBinary is a cts-dev process started by a test, as a person starts it.
type devBinary struct {
	cmd    *exec.Cmd
	dir    string
	stderr *syncBuffer
	done   chan struct{}
	code   int
}

// syncBuffer is the process's stderr, written by the os/exec copier and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startDev starts the cts-dev binary on dir with args after the binaries' flags, and env
// added to a minimal environment. The process is killed when the test ends.
func startDev(t *testing.T, dir string, env []string, args ...string) *devBinary {
	t.Helper()
	full := []string{"--dir", dir,
		"--agent", testsite.Binary(t, testsite.AgentPkg),
		"--launcher", testsite.Binary(t, testsite.LauncherPkg),
		"--demo-tool", testsite.Binary(t, testsite.DemoToolPkg),
		"--seqkit", testsite.Binary(t, "./test/demo/seqkit")}
	cmd := exec.Command(testsite.Binary(t, "./coordinator/cmd/cts-dev"), append(full, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	d := &devBinary{cmd: cmd, dir: dir, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := cmd.Wait()
		d.code = 0
		if ee, ok := err.(*exec.ExitError); ok {
			d.code = ee.ExitCode()
		} else if err != nil {
			d.code = -1
		}
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.done:
			case <-time.After(time.Minute):
				_ = cmd.Process.Kill()
				<-d.done
			}
		}
		// The site's agents and their supervisors outlive cts-dev by design.
		testsite.EndProcesses(t, dir)
		if t.Failed() {
			t.Logf("cts-dev stderr (%s):\n%s", dir, tail(d.stderr.String(), 6000))
		}
	})
	return d
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// wait waits for the process to exit and returns its exit code.
func (d *devBinary) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-d.done:
		return d.code
	case <-time.After(within):
		t.Fatalf("cts-dev still running after %s; stderr:\n%s", within, tail(d.stderr.String(), 4000))
		return 0
	}
}

// ready waits for the env file and returns its variables.
func (d *devBinary) ready(t *testing.T) map[string]string {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if b, err := os.ReadFile(filepath.Join(d.dir, "env")); err == nil {
			return parseEnv(t, b)
		}
		select {
		case <-d.done:
			t.Fatalf("cts-dev exited with %d before it was ready; stderr:\n%s", d.code, tail(d.stderr.String(), 4000))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("cts-dev not ready after 3 minutes; stderr:\n%s", tail(d.stderr.String(), 4000))
		}
	}
}

func parseEnv(t *testing.T, b []byte) map[string]string {
	t.Helper()
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if !ok {
			t.Fatalf("env file line %q", sc.Text())
		}
		env[k] = v
	}
	return env
}

// stop sends SIGINT, as Ctrl-C does, and expects a clean exit.
func (d *devBinary) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("cts-dev exited with %d after SIGINT; stderr:\n%s", code, tail(d.stderr.String(), 4000))
	}
	if _, err := os.Stat(filepath.Join(d.dir, "env")); err == nil {
		t.Fatal("the env file is still there after the site stopped")
	}
}

// lastLine is the last line of stderr that is not a JSON log line.
func (d *devBinary) plainLines() []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(d.stderr.String()), "\n") {
		if l != "" && !strings.HasPrefix(l, "{") {
			out = append(out, l)
		}
	}
	return out
}

// wantFailure expects the process to exit 1 with exactly one plain line holding want.
func (d *devBinary) wantFailure(t *testing.T, want ...string) {
	t.Helper()
	code := d.wait(t, 2*time.Minute)
	lines := d.plainLines()
	if code != 1 || len(lines) != 1 {
		t.Fatalf("exit %d with lines %q, want exit 1 and one line; stderr:\n%s", code, lines, d.stderr.String())
	}
	for _, w := range want {
		if !strings.Contains(lines[0], w) {
			t.Errorf("the line %q does not say %q", lines[0], w)
		}
	}
	if s := d.stderr.String(); strings.Contains(s, "panic") || strings.Contains(s, "goroutine ") {
		t.Fatalf("stderr holds a panic:\n%s", s)
	}
}

func TestTakenPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	t.Run("flag", func(t *testing.T) {
		d := startDev(t, filepath.Join(t.TempDir(), "dev"), nil, "--listen", addr)
		d.wantFailure(t, "cts-dev: the coordinator's address "+addr+" is in use by another program", "CTS_DEV_LISTEN=127.0.0.1:PORT")
	})
	t.Run("CTS_DEV_LISTEN", func(t *testing.T) {
		d := startDev(t, filepath.Join(t.TempDir(), "dev"), []string{"CTS_DEV_LISTEN=" + addr})
		d.wantFailure(t, "cts-dev: the coordinator's address "+addr+" is in use")
	})
}

func TestUsage(t *testing.T) {
	d := startDev(t, t.TempDir(), nil, "--lsiten", "x")
	if code := d.wait(t, time.Minute); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if lines := d.plainLines(); len(lines) != 1 || !strings.Contains(lines[0], "flag provided but not defined: -lsiten") {
		t.Fatalf("lines %q", lines)
	}
}

// TestDamagedState: a dev folder whose state cannot be read says so and how to reset it.
func TestDamagedState(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "site.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDev(t, dir, nil, "--listen", "127.0.0.1:0")
	d.wantFailure(t, "site.json is damaged: remove "+dir+" to start afresh (make clean)")
}

// TestSecondProcess: a second cts-dev on a folder whose site runs is refused; the first one
// goes on. CTS_DEV_LISTEN picks the address.
func TestSecondProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	// Reserved for the test: nothing else can take the port before cts-dev listens on it.
	port, err := ports.Reserve("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	addr := port.Addr()
	first := startDev(t, dir, []string{"CTS_DEV_LISTEN=" + addr}, "--no-samples")
	env := first.ready(t)
	if env["CTS_URL"] != "http://"+addr {
		t.Fatalf("CTS_URL %q, want http://%s (CTS_DEV_LISTEN)", env["CTS_URL"], addr)
	}
	second := startDev(t, dir, nil, "--listen", "127.0.0.1:0", "--no-samples")
	second.wantFailure(t, "cts-dev: a dev site is already running from "+dir, fmt.Sprintf("process %d", first.cmd.Process.Pid),
		"stop it first")
	c, err := client.New(env["CTS_URL"], env["CTS_TOKEN"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WhoAmI(t.Context()); err != nil {
		t.Fatalf("the first site stopped answering: %v", err)
	}
	first.stop(t)
}

// TestRestart runs jobs on a new site, stops it with SIGINT as Ctrl-C does, starts it again
// on the same folder, and finds everything there: the same tokens and addresses, the jobs with
// their outputs and logs, the images (still pullable from the registry), the reference data,
// the S3 objects; and the restarted site runs new jobs.
func TestRestart(t *testing.T) {
	testsite.RequireEnv(t)
	dir := filepath.Join(t.TempDir(), "dev")
	d := startDev(t, dir, nil, "--listen", "127.0.0.1:0")
	env := d.ready(t)
	// The addresses the site keeps are outside the kernel's ephemeral range: no outgoing
	// connection can take them while the site is stopped.
	lo, hi := ports.EphemeralRange()
	for _, k := range []string{"CTS_URL", "AWS_ENDPOINT_URL", "CTS_REGISTRY", "KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI"} {
		hostPort := env[k]
		if i := strings.Index(hostPort, "://"); i >= 0 {
			hostPort = hostPort[i+len("://"):]
		}
		hostPort = strings.TrimSuffix(hostPort, "/")
		_, p, err := net.SplitHostPort(hostPort)
		n, err2 := strconv.Atoi(p)
		if err != nil || err2 != nil || (n >= lo && n <= hi) {
			t.Errorf("%s=%s: want a port outside the ephemeral range %d-%d", k, env[k], lo, hi)
		}
	}
	ctx := t.Context()
	user, err := client.New(env["CTS_URL"], env["CTS_TOKEN"])
	if err != nil {
		t.Fatal(err)
	}
	admin, err := client.New(env["CTS_URL"], env["CTS_ADMIN_TOKEN"])
	if err != nil {
		t.Fatal(err)
	}
	registry := env["CTS_REGISTRY"]
	demoImage := registry + "/" + devmode.DemoImage

	// A new site has the samples.
	imgs, err := user.Images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, im := range imgs {
		names = append(names, im.Name+":"+im.Tag)
	}
	for _, want := range []string{demoImage, registry + "/" + devmode.SeqKitImage} {
		if !slices.Contains(names, want) {
			t.Fatalf("images %q lack %s", names, want)
		}
	}
	inputs := []string{devmode.SamplesPrefix + devmode.SampleGenomes[0], devmode.SamplesPrefix + devmode.SampleGenomes[1]}
	job1 := runJob(t, user, demoImage, inputs, "cts-data/cts_user/restart/run1")

	// Reference data, staged by an agent, and an object of our own.
	s3c := s3.New(s3.Options{Region: env["AWS_REGION"], BaseEndpoint: aws.String(env["AWS_ENDPOINT_URL"]), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], "")})
	refPath := devmode.SamplesPrefix + devmode.SampleRefdata
	refCRC := headCRC(t, s3c, refPath)
	rd, err := admin.RegisterRefdata(ctx, refPath, refCRC, true)
	if err != nil {
		t.Fatal(err)
	}
	waitRefdata(t, admin, rd.ID)
	mine := []byte("kept across restarts\n")
	crc := checksum.Encode(checksum.Sum(mine))
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("cts-data"), Key: aws.String("cts_user/restart/mine.txt"),
		Body: bytes.NewReader(mine), ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme, ChecksumCRC64NVME: aws.String(crc)}); err != nil {
		t.Fatal(err)
	}

	d.stop(t)
	d2 := startDev(t, dir, nil, "--listen", "127.0.0.1:0")
	env2 := d2.ready(t)
	if !strings.Contains(d2.stderr.String(), "restarted: its jobs, images, reference data, S3 objects and tokens are kept") {
		t.Errorf("the restart was not announced:\n%s", d2.stderr.String())
	}
	for _, k := range []string{"CTS_URL", "CTS_TOKEN", "CTS_ADMIN_TOKEN", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CTS_REGISTRY", "KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI"} {
		if env2[k] != env[k] {
			t.Errorf("%s changed across the restart: %q, then %q", k, env[k], env2[k])
		}
	}

	j, err := user.Job(ctx, job1)
	if err != nil || j.State != "complete" || len(j.Outputs) == 0 {
		t.Fatalf("job %s after the restart: %+v, %v", job1, j, err)
	}
	for _, o := range j.Outputs {
		if got := headCRC(t, s3c, o.File); got != o.CRC64NVME {
			t.Errorf("output %s: S3 has CRC %s, the job %s", o.File, got, o.CRC64NVME)
		}
	}
	if _, err := user.Image(ctx, demoImage); err != nil {
		t.Fatalf("image after the restart: %v", err)
	}
	ref, err := name.ParseReference(demoImage, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Head(ref, remote.WithContext(ctx)); err != nil {
		t.Fatalf("the registry lost %s: %v", demoImage, err)
	}
	got, err := admin.RefdataByID(ctx, rd.ID, false)
	if err != nil || len(got.Statuses) == 0 || got.Statuses[0].State != "complete" {
		t.Fatalf("refdata after the restart: %+v, %v", got, err)
	}
	if headCRC(t, s3c, "cts-data/cts_user/restart/mine.txt") != crc {
		t.Fatal("our object changed across the restart")
	}
	// The restarted site runs jobs.
	runJob(t, user, demoImage, inputs[1:], "cts-data/cts_user/restart/run2")
	d2.stop(t)
}

// runJob submits a demo job and waits for it to complete.
func runJob(t *testing.T, c *client.Client, image string, inputs []string, out string) string {
	t.Helper()
	files, _ := json.Marshal(inputs)
	body := fmt.Sprintf(`{"cluster": %q, "image": %q, "input_files": %s, "output_dir": %q,
		"num_containers": 1, "cpus": 1, "memory": "100MB", "runtime": "PT5M",
		"params": {"args": ["--container", {"type": "container_number"},
			{"type": "input_files", "input_files_format": "space_separated_list"}]}}`,
		devmode.SiteName, image, files, out)
	id, err := c.SubmitJSON(t.Context(), []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	st, err := c.Wait(ctx, id, client.WaitOptions{})
	if err != nil || st.State != "complete" {
		j, _ := c.Job(t.Context(), id)
		t.Fatalf("job %s: %+v, %v; job: %+v", id, st, err, j)
	}
	return id
}

func headCRC(t *testing.T, c *s3.Client, path string) string {
	t.Helper()
	bucket, key, _ := strings.Cut(path, "/")
	h, err := c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &bucket, Key: &key, ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		t.Fatalf("head %s: %v", path, err)
	}
	return aws.ToString(h.ChecksumCRC64NVME)
}

func waitRefdata(t *testing.T, c *client.Client, id string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		rd, err := c.RefdataByID(t.Context(), id, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(rd.Statuses) > 0 && rd.Statuses[0].State == "complete" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("refdata %s not staged after 3 minutes: %+v", id, rd)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
