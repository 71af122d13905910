// Package imagebuild builds small OCI images in Go and pushes them to a registry, for tests
// and the dev site (cts-dev). It needs no Docker engine and no external tool besides the go
// command (for BuildGoBinary).
//
// It owns image construction only: it does not run containers, does not serve a registry
// (the caller starts github.com/google/go-containerregistry/pkg/registry) and must never be
// imported by production code.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestToolPkg is the import path of the static test program committed beside this package;
// pass it to BuildGoBinary.
const TestToolPkg = "github.com/kbase/cts/test/imagebuild/testtool"

// File is one entry of an image layer.
type File struct {
	// Path is the absolute path inside the image, e.g. "/app/tool".
	Path string
	// Mode holds the permission bits (0 means 0644 for files, 0755 for directories) and the
	// type: os.ModeDir makes a directory, os.ModeSymlink a symbolic link whose target is Data.
	Mode os.FileMode
	// Data is the file content (or the symlink target).
	Data []byte
}

// epoch is the fixed modification time of every entry, so equal inputs give equal digests.
var epoch = time.Unix(0, 0).UTC()

// Build returns a single-layer linux image for the running architecture holding files (parent
// directories are added), whose config has the given entrypoint and environment and the
// working directory "/". Equal arguments give the same digest.
func Build(files []File, entrypoint []string, env []string) (v1.Image, error) {
	tb, err := Tar(files)
	if err != nil {
		return nil, err
	}
	return FromTars([][]byte{tb}, entrypoint, env)
}

// Tar returns an uncompressed tar stream of files, parent directories first, sorted by path.
func Tar(files []File) ([]byte, error) {
	entries := map[string]File{}
	for _, f := range files {
		p := path.Clean("/" + f.Path)
		if p == "/" || strings.Contains("/"+f.Path+"/", "/../") {
			return nil, fmt.Errorf("tar: bad path %q", f.Path)
		}
		if _, dup := entries[p]; dup {
			return nil, fmt.Errorf("tar: duplicate path %q", f.Path)
		}
		entries[p] = f
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := entries[d]; !ok {
				entries[d] = File{Path: d, Mode: os.ModeDir | 0o755}
			}
		}
	}
	names := make([]string, 0, len(entries))
	for p := range entries {
		names = append(names, p)
	}
	sort.Strings(names) // a parent sorts before its children
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range names {
		f := entries[p]
		hdr := &tar.Header{Name: strings.TrimPrefix(p, "/"), ModTime: epoch, Format: tar.FormatPAX}
		perm := int64(f.Mode.Perm())
		switch {
		case f.Mode.IsDir():
			if perm == 0 {
				perm = 0o755
			}
			hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
		case f.Mode&os.ModeSymlink != 0:
			perm = 0o777
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, string(f.Data)
		case f.Mode.IsRegular():
			if perm == 0 {
				perm = 0o644
			}
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(f.Data))
		default:
			return nil, fmt.Errorf("tar: %s: unsupported mode %v", f.Path, f.Mode)
		}
		hdr.Mode = perm
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar: %s: %w", p, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, fmt.Errorf("tar: %s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tar: %w", err)
	}
	return buf.Bytes(), nil
}

// FromTars returns a linux image for the running architecture with one gzip layer per
// uncompressed tar stream (lowest first), so tests can build layers the way an attacker would
// (whiteouts, "..", symlinks) with archive/tar. The config has the given entrypoint and
// environment and the working directory "/".
func FromTars(tars [][]byte, entrypoint []string, env []string) (v1.Image, error) {
	layers := make([]v1.Layer, 0, len(tars))
	for i, tb := range tars {
		tb := tb
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(tb)), nil
		}, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		layers = append(layers, l)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layers...)
	if err != nil {
		return nil, fmt.Errorf("append layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = append([]string(nil), entrypoint...)
	cf.Config.Env = append([]string(nil), env...)
	cf.Config.WorkingDir = "/"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

// BuildGoBinary runs `CGO_ENABLED=0 go build -trimpath` on the main package pkgDir (a
// directory or an import path, resolved from the current directory) and returns the static
// binary. The binary is written to dest, a host file path; when dest is "" a temporary file is
// used and removed.
func BuildGoBinary(ctx context.Context, pkgDir string, dest string) ([]byte, error) {
	if dest == "" {
		dir, err := os.MkdirTemp("", "imagebuild-")
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", pkgDir, err)
		}
		defer os.RemoveAll(dir)
		dest = filepath.Join(dir, "bin")
	}
	// `go test` puts its own GOROOT/bin first on the PATH of test binaries.
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", pkgDir, err)
	}
	cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath", "-o", dest, pkgDir)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("build %s: %w: %s", pkgDir, err, strings.TrimSpace(stderr.String()))
	}
	b, err := os.ReadFile(dest)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", pkgDir, err)
	}
	return b, nil
}

// Push writes img to ref (a tag or repository reference such as "127.0.0.1:5000/tool:v1")
// and returns the manifest digest "sha256:...". Loopback registries are spoken to over plain
// http.
func Push(ctx context.Context, img v1.Image, ref string) (digest string, err error) {
	var opts []name.Option
	if isLoopback(ref) {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	if err := remote.Write(r, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("push %s: digest: %w", ref, err)
	}
	return d.String(), nil
}

// isLoopback reports whether the registry host of ref is 127.0.0.1, ::1 or localhost.
func isLoopback(ref string) bool {
	host, _, _ := strings.Cut(ref, "/")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
