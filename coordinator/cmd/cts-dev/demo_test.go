package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/test/testsite"
)

// TestMakeDemo walks `make demo` as a person does after `make build`: scripts/demo.sh on a
// checkout's layout (bin/ holding the built programs, .dev not there yet), then again on the
// same .dev, as a second `make demo` does. Both must end with a complete job whose outputs
// were verified. The dev site registers the demo image as its sample at its first start and
// every demo pushes the same bytes: the demo must run it, not fail on the digest being
// registered already.
func TestMakeDemo(t *testing.T) {
	testsite.RequireEnv(t)
	root := t.TempDir()
	for _, d := range []string{"bin", "scripts"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, "../../../scripts/demo.sh", filepath.Join(root, "scripts", "demo.sh"))
	launcher := testsite.Binary(t, testsite.LauncherPkg)
	for name, from := range map[string]string{
		"cts-dev":              testsite.Binary(t, "./coordinator/cmd/cts-dev"),
		"cts-demo":             testsite.Binary(t, "./test/demo/cmd/cts-demo"),
		"cts-demo-tool":        testsite.Binary(t, testsite.DemoToolPkg),
		"cts-demo-seqkit":      testsite.Binary(t, "./test/demo/seqkit"),
		"cts-agent":            testsite.Binary(t, testsite.AgentPkg),
		"cts-launcher-local":   launcher,
		"cts-local-supervisor": filepath.Join(filepath.Dir(launcher), "cts-local-supervisor"),
	} {
		copyFile(t, from, filepath.Join(root, "bin", name))
	}
	t.Cleanup(func() { testsite.EndProcesses(t, filepath.Join(root, ".dev")) })

	for _, run := range []string{"first, on a new site", "second, on the same site"} {
		cmd := exec.Command("bash", filepath.Join(root, "scripts", "demo.sh"))
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
		done := make(chan struct{})
		var out []byte
		var err error
		go func() { out, err = cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Minute):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("the %s demo still running after 10 minutes:\n%s", run, out)
		}
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(root, ".dev", "demo-dev.log"))
			t.Fatalf("the %s demo failed (%v):\n%s\ncts-dev's log:\n%s", run, err, out, tail(string(log), 4000))
		}
		for _, want := range []string{"complete", "demo wall time"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("the %s demo's output lacks %q:\n%s", run, want, out)
			}
		}
		t.Logf("the %s demo:\n%s", run, out)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fi.Mode().Perm())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
