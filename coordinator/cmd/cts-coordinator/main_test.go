package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/coordinator/devstack/auth2"
	"github.com/kbase/cts/test/ports"
	"github.com/kbase/cts/test/testsite"
)

func TestMain(m *testing.M) { testsite.Main(m) }

// closedAddr returns a loopback address nothing listens on, reserved until the test ends so
// that nothing else can listen there meanwhile (the coordinator under test may: see
// ports.Reservation).
func closedAddr(t *testing.T) string {
	t.Helper()
	port, err := ports.Reserve("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = port.Close() })
	return port.Addr()
}

// deps are the addresses of the services a coordinator needs.
type deps struct {
	auth, mongo, kafka, s3, access, secret, listen, logBucket string
}

// config writes a configuration file for d with one local site.
func (d deps) config(t *testing.T) string {
	t.Helper()
	agent := testsite.Binary(t, testsite.AgentPkg)
	launcher := testsite.Binary(t, testsite.LauncherPkg)
	y := `listen: ` + d.listen + `
service_url: http://` + d.listen + `
auth: {url: "` + d.auth + `"}
mongo: {uri: "mongodb://` + d.mongo + `/", database: cts_startup}
kafka: {brokers: ["` + d.kafka + `"], topic: cts-jobs}
s3: {endpoint: "` + d.s3 + `", access_key: "` + d.access + `", region: us-east-1}
jobs: {log_dir: ` + d.logBucket + `/container_logs}
sites:
  - name: local
    plugin: ` + launcher + `
    cpus_per_node: 1
    memory_per_node_gb: 1
    max_runtime_min: 5
    plugin_config: {agent_path: ` + agent + `, work_dir: ` + t.TempDir() + `}
`
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runCoordinator runs the cts-coordinator binary as an operator would and returns its exit
// code and the lines of stderr that are not JSON log lines.
func runCoordinator(t *testing.T, env []string, args ...string) (int, []string, string) {
	t.Helper()
	bin := testsite.Binary(t, "./coordinator/cmd/cts-coordinator")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run cts-coordinator: %v", err)
	}
	var plain []string
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if l != "" && !strings.HasPrefix(l, "{") {
			plain = append(plain, l)
		}
	}
	return code, plain, stderr.String()
}

// TestStartFailures starts the real cts-coordinator binary with each way a start can fail:
// each must end with exit code 1 and one line saying what is wrong and what to do, never a
// panic.
func TestStartFailures(t *testing.T) {
	st := devstack.TestStack(t, devstack.Options{Buckets: []string{"cts-logs"},
		Users: []auth2.User{{Name: "someone", Token: "tok"}}})
	good := deps{
		auth: st.Auth.URL(), mongo: strings.TrimSuffix(strings.TrimPrefix(st.Mongo.URI(), "mongodb://"), "/"),
		kafka: st.Kafka.Brokers()[0], s3: st.S3.Endpoint, access: st.S3.AccessKey, secret: st.S3.SecretKey,
		listen: closedAddr(t), logBucket: "cts-logs",
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	cases := []struct {
		name   string
		change func(d *deps)
		config string // a config file's content instead of d's
		want   []string
	}{
		{name: "mongodb unreachable", change: func(d *deps) { d.mongo = closedAddr(t) },
			want: []string{"cts-coordinator: MongoDB at 127.0.0.1:", "no answer within", "connection refused", "check mongo.uri"}},
		{name: "s3 unreachable", change: func(d *deps) { d.s3 = "http://" + closedAddr(t) },
			want: []string{"cts-coordinator: S3 at http://127.0.0.1:", "is unreachable (connection refused): check s3.endpoint"}},
		{name: "s3 unknown access key", change: func(d *deps) { d.access = "nobody" },
			want: []string{"cts-coordinator: S3 at http://127.0.0.1:", "refused the credentials for bucket cts-logs"}},
		{name: "s3 wrong secret", change: func(d *deps) { d.secret = "wrong" },
			want: []string{"cts-coordinator: S3 at http://127.0.0.1:", "refused the credentials for bucket cts-logs"}},
		{name: "kafka unreachable", change: func(d *deps) { d.kafka = closedAddr(t) },
			want: []string{"cts-coordinator: the Kafka brokers 127.0.0.1:", "are unreachable (connection refused): check kafka.brokers"}},
		{name: "port taken", change: func(d *deps) { d.listen = taken.Addr().String() },
			want: []string{"cts-coordinator: listen on " + taken.Addr().String() + ": the address is in use by another program"}},
		{name: "unknown key", config: "listen: 127.0.0.1:1\nlisten_adress: x\n",
			want: []string{"cts-coordinator: invalid configuration: ", "listen_adress"}},
		{name: "no log bucket", change: func(d *deps) { d.logBucket = "no-such-bucket" },
			want: []string{"cts-coordinator: S3 at http://127.0.0.1:", "has no bucket no-such-bucket (the bucket of jobs.log_dir): create it or fix jobs.log_dir"}},
		{name: "missing settings", config: "listen: 127.0.0.1:1\n",
			want: []string{"cts-coordinator: invalid configuration: ", "auth.url is required", "; mongo.uri is required", "at least one site is required"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := good
			var path string
			if c.config != "" {
				path = filepath.Join(t.TempDir(), "config.yaml")
				if err := os.WriteFile(path, []byte(c.config), 0o600); err != nil {
					t.Fatal(err)
				}
			} else {
				c.change(&d)
				path = d.config(t)
			}
			start := time.Now()
			code, lines, all := runCoordinator(t, []string{"CTS_S3_SECRET_KEY=" + d.secret}, "-config", path)
			t.Logf("exit %d after %s: %q", code, time.Since(start).Round(time.Millisecond), lines)
			if code != 1 || len(lines) != 1 {
				t.Fatalf("exit %d with %d plain lines, want 1 and one line; stderr:\n%s", code, len(lines), all)
			}
			for _, w := range c.want {
				if !strings.Contains(lines[0], w) {
					t.Errorf("the line %q does not say %q", lines[0], w)
				}
			}
			if strings.Contains(all, "panic") || strings.Contains(all, "goroutine ") {
				t.Fatalf("stderr holds a panic:\n%s", all)
			}
		})
	}
}
