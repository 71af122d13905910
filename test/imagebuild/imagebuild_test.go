package imagebuild

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// entries lists a layer as "name mode type [data]" strings.
func entries(t *testing.T, l v1.Layer) []string {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		s := h.Name + " " + os.FileMode(h.Mode).String() + " " + string(h.Typeflag)
		if len(data) > 0 {
			s += " " + string(data)
		}
		if h.Linkname != "" {
			s += " -> " + h.Linkname
		}
		if !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: mtime %v", h.Name, h.ModTime)
		}
		out = append(out, s)
	}
}

func TestBuild(t *testing.T) {
	files := []File{
		{Path: "/app/tool", Mode: 0o755, Data: []byte("bin")},
		{Path: "/etc/conf", Data: []byte("c")},
		{Path: "/app/link", Mode: os.ModeSymlink, Data: []byte("tool")},
		{Path: "/empty", Mode: os.ModeDir | 0o700},
	}
	img, err := Build(files, []string{"/app/tool", "x"}, []string{"A=1"})
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d %v", len(layers), err)
	}
	want := []string{
		"app/ -rwxr-xr-x 5",
		"app/link -rwxrwxrwx 2 -> tool",
		"app/tool -rwxr-xr-x 0 bin",
		"empty/ -rwx------ 5",
		"etc/ -rwxr-xr-x 5",
		"etc/conf -rw-r--r-- 0 c",
	}
	if got := entries(t, layers[0]); !slices.Equal(got, want) {
		t.Errorf("entries\n got %q\nwant %q", got, want)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH || cf.Config.WorkingDir != "/" ||
		!slices.Equal(cf.Config.Entrypoint, []string{"/app/tool", "x"}) || !slices.Equal(cf.Config.Env, []string{"A=1"}) {
		t.Errorf("config %+v", cf)
	}
	if len(cf.RootFS.DiffIDs) != 1 {
		t.Errorf("diff ids %v", cf.RootFS.DiffIDs)
	}

	reversed := slices.Clone(files)
	slices.Reverse(reversed)
	again, err := Build(reversed, []string{"/app/tool", "x"}, []string{"A=1"})
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("same input, different digests %s %s", d1, d2)
	}
}

func TestTarRefuses(t *testing.T) {
	cases := map[string][]File{
		"dot-dot":   {{Path: "/a/../../x"}},
		"root":      {{Path: "/"}},
		"duplicate": {{Path: "/a"}, {Path: "a"}},
		"device":    {{Path: "/dev/x", Mode: os.ModeDevice}},
	}
	for name, files := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Tar(files); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestFromTars(t *testing.T) {
	a, err := Tar([]File{{Path: "/a", Data: []byte("1")}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Tar([]File{{Path: "/.wh.a"}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := FromTars([][]byte{a, b}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("layers %d %v", len(layers), err)
	}
	if got := entries(t, layers[1]); !slices.Equal(got, []string{".wh.a -rw-r--r-- 0"}) {
		t.Errorf("upper layer %q", got)
	}
}

func TestPush(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := Build([]File{{Path: "/f", Data: []byte("x")}}, []string{"/f"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	digest, err := Push(context.Background(), img, host+"/repo/name:v1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("digest %q", digest)
	}
	for _, ref := range []string{host + "/repo/name:v1", host + "/repo/name@" + digest} {
		r, err := name.ParseReference(ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(r)
		if err != nil {
			t.Fatal(err)
		}
		if desc.Digest.String() != digest {
			t.Errorf("%s: registry has %s, Push returned %s", ref, desc.Digest, digest)
		}
	}
	if _, err := Push(context.Background(), img, "UPPER/case:tag"); err == nil {
		t.Error("bad reference accepted")
	}
}

func TestIsLoopback(t *testing.T) {
	cases := map[string]bool{
		"127.0.0.1:5000/a":    true,
		"localhost:5000/a":    true,
		"[::1]:5000/a":        true,
		"127.0.0.1/a":         true,
		"ghcr.io/kbase/a":     false,
		"10.0.0.1:5000/a":     false,
		"localhost.evil.io/a": false,
	}
	for ref, want := range cases {
		if got := isLoopback(ref); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", ref, got, want)
		}
	}
}

func TestBuildGoBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go program")
	}
	dest := filepath.Join(t.TempDir(), "testtool")
	bin, err := BuildGoBinary(context.Background(), TestToolPkg, dest)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("binary is dynamically linked")
		}
	}
	out, err := exec.Command(dest, "echo", "a b", "$HOME").Output()
	if err != nil || string(out) != "a b\n$HOME\n" {
		t.Errorf("testtool echo: %q %v", out, err)
	}
	if _, err := BuildGoBinary(context.Background(), "./does-not-exist", ""); err == nil {
		t.Error("building a missing package succeeded")
	}
}
