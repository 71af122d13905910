package container

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kbase/cts/test/dockertest"
	"github.com/kbase/cts/test/imagebuild"
)

// requireRunc skips tests that need runc and root (CI installs runc and runs as root).
func requireRunc(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run runc containers")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc not installed (apt-get install -y runc)")
	}
}

// requireCrun skips tests that need crun, root and a node whose cgroups crun accepts; with
// CTS_REQUIRE_CRUN=1 (make test) it fails instead, as CI must run them.
func requireCrun(t testing.TB) {
	t.Helper()
	skip := t.Skip
	if os.Getenv("CTS_REQUIRE_CRUN") == "1" {
		skip = t.Fatal
	}
	if os.Geteuid() != 0 {
		skip("needs root to run crun containers")
	}
	if _, err := exec.LookPath("crun"); err != nil {
		skip("crun not installed (apt-get install -y crun)")
	}
	if err := CrunUsable(); err != nil {
		skip(err)
	}
}

// requireEngine is requireRunc or requireCrun.
func requireEngine(t testing.TB, engine string) {
	t.Helper()
	if engine == EngineCrun {
		requireCrun(t)
		return
	}
	requireRunc(t)
}

// engines are the low-level runtimes the oci runtime's tests run with.
var engines = []string{EngineRunc, EngineCrun}

var (
	toolOnce sync.Once
	toolBin  []byte
	toolErr  error
)

// testTool returns the static testtool binary, built once per test binary.
func testTool(t testing.TB) []byte {
	t.Helper()
	toolOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		toolBin, toolErr = imagebuild.BuildGoBinary(ctx, imagebuild.TestToolPkg, "")
	})
	if toolErr != nil {
		t.Fatalf("build testtool: %v", toolErr)
	}
	return toolBin
}

// newRegistry serves an in-process registry, optionally behind wrap, and returns its host.
func newRegistry(t testing.TB, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// push pushes img as host/repo:latest and returns the pinned reference.
func push(t testing.TB, img v1.Image, host, repo string) string {
	t.Helper()
	d, err := imagebuild.Push(context.Background(), img, host+"/"+repo+":latest")
	if err != nil {
		t.Fatal(err)
	}
	return host + "/" + repo + "@" + d
}

// toolImage is the testtool at /bin/testtool with PATH=/bin.
func toolImage(t testing.TB) v1.Image {
	t.Helper()
	img, err := imagebuild.Build([]imagebuild.File{{Path: "/bin/testtool", Mode: 0o755, Data: testTool(t)}},
		[]string{"/bin/testtool"}, []string{"PATH=/bin", "FROM_IMAGE=image", "OVERRIDE=image"})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

type dirs struct{ root, cache, bundles string }

func newDirs(t testing.TB) dirs {
	base := t.TempDir()
	return dirs{root: filepath.Join(base, "runc"), cache: filepath.Join(base, "cache"), bundles: filepath.Join(base, "bundles")}
}

func newOCI(t testing.TB, d dirs) *OCI {
	t.Helper()
	return newOCIEngine(t, d, EngineRunc)
}

// newOCIEngine is newOCI with the given engine.
func newOCIEngine(t testing.TB, d dirs, engine string) *OCI {
	t.Helper()
	if _, err := exec.LookPath(engine); err != nil {
		t.Skipf("%s not installed (apt-get install -y %s): NewOCI needs it", engine, engine)
	}
	o, err := NewOCI(OCIConfig{Root: d.root, CacheDir: d.cache, BundleDir: d.bundles, Insecure: true, Engine: engine})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// fixture is a runtime with the testtool image pulled: the `oci` runtime over its own
// directories, or the `docker` runtime on the node's real engine.
type fixture struct {
	kind  string // "runc" or "crun" (the oci runtime with that engine), or "docker"
	rt    Runtime
	image string
	// prefix starts the IDs of this fixture's containers: tests share the node's Docker
	// engine and run in parallel, so each checks only its own.
	prefix string
	// oci only
	d   dirs
	oci *OCI
	// docker only
	dock *Docker
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newEngineFixture(t, EngineRunc)
}

// newEngineFixture is newFixture with the oci runtime's given engine.
func newEngineFixture(t testing.TB, engine string) *fixture {
	t.Helper()
	requireEngine(t, engine)
	host := newRegistry(t, nil)
	image := push(t, toolImage(t), host, "testtool")
	d := newDirs(t)
	rt := newOCIEngine(t, d, engine)
	if err := rt.Pull(context.Background(), image); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { assertNoContainers(t, rt, d) })
	return &fixture{kind: engine, d: d, rt: rt, oci: rt, image: image, prefix: newPrefix()}
}

// newPrefix returns a container ID prefix no other fixture uses: cgroups and Docker names are
// node-wide, so the pid keeps concurrent test binaries apart.
func newPrefix() string {
	idSeq.Lock()
	defer idSeq.Unlock()
	idSeq.fixtures++
	return "cts-test-" + strconv.Itoa(os.Getpid()) + "-" + strconv.Itoa(idSeq.fixtures) + "-"
}

// newDockerFixture is newFixture for the docker runtime, on the real engine. The image it
// pulled is removed at the end.
func newDockerFixture(t testing.TB) *fixture {
	t.Helper()
	sock := dockertest.Require(t)
	host := newRegistry(t, nil)
	image := push(t, toolImage(t), host, "testtool")
	rt := NewDocker(DockerConfig{Socket: sock})
	if err := rt.Pull(context.Background(), image); err != nil {
		t.Fatal(err)
	}
	prefix := newPrefix()
	t.Cleanup(func() {
		assertNoDockerContainers(t, rt, prefix)
		removeDockerImage(t, rt, image)
	})
	return &fixture{kind: "docker", rt: rt, dock: rt, image: image, prefix: prefix}
}

// eachRuntime runs fn as the subtests "oci" (runc), "crun" (the oci runtime with crun) and
// "docker", each with its own fixture.
func eachRuntime(t *testing.T, fn func(t *testing.T, f *fixture)) {
	t.Run("oci", func(t *testing.T) { fn(t, newFixture(t)) })
	t.Run("crun", func(t *testing.T) { fn(t, newEngineFixture(t, EngineCrun)) })
	t.Run("docker", func(t *testing.T) { fn(t, newDockerFixture(t)) })
}

// eachEngine runs fn as the subtests "runc" and "crun", each with its own oci fixture.
func eachEngine(t *testing.T, fn func(t *testing.T, f *fixture)) {
	for _, e := range engines {
		t.Run(e, func(t *testing.T) { fn(t, newEngineFixture(t, e)) })
	}
}

// assertNoDockerContainers checks that the engine holds no container of this runtime's owner
// whose name starts with prefix.
func assertNoDockerContainers(t testing.TB, d *Docker, prefix string) {
	t.Helper()
	var left []string
	for _, n := range dockerContainersOf(t, d, d.owner) {
		if strings.HasPrefix(strings.TrimPrefix(n, "/"), prefix) {
			left = append(left, n)
		}
	}
	if len(left) > 0 {
		t.Errorf("containers left in the engine: %v", left)
	}
}

// dockerContainersOf lists the names of the engine's containers whose owner label is owner.
func dockerContainersOf(t testing.TB, d *Docker, owner string) []string {
	t.Helper()
	filters, _ := json.Marshal(map[string][]string{"label": {DockerLabelOwner + "=" + owner}})
	var list []struct{ Names []string }
	if err := d.call(context.Background(), http.MethodGet, "/containers/json", url.Values{"all": {"1"}, "filters": {string(filters)}}, nil, &list); err != nil {
		t.Fatalf("list containers: %v", err)
	}
	var names []string
	for _, c := range list {
		names = append(names, strings.Join(c.Names, ","))
	}
	return names
}

func removeDockerImage(t testing.TB, d *Docker, image string) {
	t.Helper()
	if err := d.removeImage(context.Background(), image, true); err != nil {
		t.Errorf("remove image %s: %v", image, err)
	}
}

var idSeq struct {
	sync.Mutex
	n        int
	fixtures int
}

// spec returns a Spec for the testtool with a fresh id.
func (f *fixture) spec(args ...string) Spec {
	idSeq.Lock()
	idSeq.n++
	n := idSeq.n
	idSeq.Unlock()
	prefix := f.prefix
	if prefix == "" {
		prefix = "cts-test-" + strconv.Itoa(os.Getpid()) + "-"
	}
	return Spec{
		ID:          prefix + strconv.Itoa(n),
		Image:       f.image,
		Command:     append([]string{"testtool"}, args...),
		MemoryBytes: 256 << 20,
		CPUs:        1,
		KillGrace:   2 * time.Second,
	}
}

// run runs s and returns the result and both streams.
func (f *fixture) run(t testing.TB, ctx context.Context, s Spec) (Result, string, string, error) {
	t.Helper()
	var stdout, stderr syncBuffer
	s.Stdout, s.Stderr = &stdout, &stderr
	res, err := f.rt.Run(ctx, s)
	if w, ok := f.rt.(Waiter); ok {
		// The container's deletion, as an agent waits for it before it exits.
		w.Wait()
	}
	return res, stdout.String(), stderr.String(), err
}

// assertNoContainers checks that nothing is left under the engine's root and the bundle dir:
// no container the engine lists, no state directory (the seccomp filter caches' .cache aside).
func assertNoContainers(t testing.TB, rt *OCI, d dirs) {
	t.Helper()
	rt.Wait()
	out, err := rt.runcCall(context.Background(), "list", "--quiet")
	if err != nil {
		t.Errorf("%s list: %v", rt.engine.name, err)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("containers left under %s: %s", d.root, s)
	}
	states, err := os.ReadDir(d.root)
	if err != nil && !os.IsNotExist(err) {
		t.Errorf("read the root: %v", err)
	}
	for _, e := range states {
		if e.Name() != ".cache" {
			t.Errorf("state left under %s: %s", d.root, e.Name())
		}
	}
	entries, err := os.ReadDir(d.bundles)
	if err != nil {
		t.Errorf("read bundle dir: %v", err)
	}
	for _, e := range entries {
		t.Errorf("bundle left: %s", e.Name())
	}
	if m := mountsUnder(t, d.bundles); len(m) > 0 {
		t.Errorf("mounts left under the bundle dir: %v", m)
	}
}

// mountsUnder lists the mount points below dir in this process's mount table.
func mountsUnder(t testing.TB, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of two copier goroutines and
// a reader; notify (when set) receives every write.
type syncBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	notify func(string)
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	if b.notify != nil {
		b.notify(b.buf.String())
	}
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
