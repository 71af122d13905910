// Package refdata stages reference data on a worker: it downloads one S3 object with
// CRC64/NVME verification, unpacks it safely when asked (.gz, .tar.gz/.tgz, .zst,
// .tar.zst/.tzst, .tar), writes a manifest of every file (path, size, CRC64/NVME) and
// publishes the tree atomically as <HostPath>/<id>, the directory jobs get mounted read-only.
//
// Safety of unpacking: every file-system call goes through os.Root on the staging directory,
// and entries are refused (the whole staging fails, nothing is published) when they are
// absolute or contain "..", are devices or FIFOs, are hard links to anything but a regular
// file unpacked earlier, are symlinks whose target is absolute or resolves outside the tree
// (checked at creation and again for every symlink once the tree is complete, since a later
// link can redirect an earlier one), or duplicate an earlier file. The total bytes and the
// number of entries are bounded.
//
// Publishing: the tree is built in <id>.tmp beside the final directory and renamed to <id>
// only once complete, manifest included; a lock file serialises stagers of one id on one
// file system. Staging is idempotent: a published tree whose manifest matches the request is
// success without a download.
//
// The package must not talk to the coordinator (the caller reports) and must not log.
package refdata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kbase/cts/agent/internal/transfer"
	"github.com/kbase/cts/shared/checksum"
)

// ManifestName is the manifest's file name at the top of a published tree.
const ManifestName = ".cts-manifest.json"

// Defaults of the zero Config bounds.
const (
	DefaultMaxBytes int64 = 1 << 40
	DefaultMaxFiles       = 1_000_000
)

// Errors callers can branch on with errors.Is. A corrupted download matches
// checksum.ErrMismatch.
var (
	// ErrUnsafe: an archive entry was refused (path escape, link out of the tree, device...).
	ErrUnsafe = errors.New("unsafe archive entry")
	// ErrTooLarge: the unpacked data exceeds Config.MaxBytes or Config.MaxFiles.
	ErrTooLarge = errors.New("unpacked data exceeds the bounds")
	// ErrPublished: <id> exists but is not what this request would publish (no manifest, or a
	// manifest of other data, or files that changed): an admin must look.
	ErrPublished = errors.New("published reference data does not match")
	// ErrInvalid: the request is malformed.
	ErrInvalid = errors.New("invalid refdata request")
)

// Config is one staging request.
type Config struct {
	// ID is the refdata ID (^[A-Za-z0-9_-]{1,50}$): the published directory's name.
	ID string
	// S3Path ("bucket/key") and CRC64NVME name the object.
	S3Path    string
	CRC64NVME string
	// Unpack unpacks the object by its extension; otherwise it is published as is.
	Unpack bool
	// HostPath is REFDATA_HOST_PATH, the existing directory holding published trees.
	HostPath string
	// MaxBytes bounds the bytes of the unpacked files, MaxFiles the number of entries.
	MaxBytes int64
	MaxFiles int
}

// Downloader fetches one object with CRC verification (transfer.Client).
type Downloader interface {
	Download(ctx context.Context, d transfer.Download) error
}

// File is one regular file of a manifest.
type File struct {
	Path      string `json:"path"`
	Size      int64  `json:"size"`
	CRC64NVME string `json:"crc64nvme"`
}

// Symlink is one symbolic link of a manifest.
type Symlink struct {
	Path   string `json:"path"`
	Target string `json:"target"`
}

// Manifest describes a published tree.
type Manifest struct {
	ID        string    `json:"id"`
	S3Path    string    `json:"s3_path"`
	CRC64NVME string    `json:"crc64nvme"`
	Unpack    bool      `json:"unpack"`
	StagedOn  time.Time `json:"staged_on"`
	Files     []File    `json:"files"`
	Symlinks  []Symlink `json:"symlinks,omitempty"`
	// Bytes is the sum of the file sizes.
	Bytes int64 `json:"bytes"`
}

// Result is a successful staging.
type Result struct {
	// Dir is the published directory.
	Dir      string
	Manifest Manifest
	// Existing is true when the tree was published before and nothing was downloaded.
	Existing bool
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,50}$`)

// format is how an object is unpacked.
type format int

const (
	fmtTarGz format = iota
	fmtTarZst
	fmtTar
	fmtGz
	fmtZst
)

// formatOf returns the unpack format of a file name (any case), and the name a single
// compressed file is unpacked to.
func formatOf(name string) (format, string, bool) {
	l := strings.ToLower(name)
	switch {
	case strings.HasSuffix(l, ".tar.gz"), strings.HasSuffix(l, ".tgz"):
		return fmtTarGz, "", true
	case strings.HasSuffix(l, ".tar.zst"), strings.HasSuffix(l, ".tzst"):
		return fmtTarZst, "", true
	case strings.HasSuffix(l, ".tar"):
		return fmtTar, "", true
	case strings.HasSuffix(l, ".gz"):
		return fmtGz, name[:len(name)-3], true
	case strings.HasSuffix(l, ".zst"):
		return fmtZst, name[:len(name)-4], true
	}
	return 0, "", false
}

// Stage stages cfg (see the package comment). On failure nothing is published and the
// temporary directories are removed.
func Stage(ctx context.Context, cfg Config, dl Downloader) (*Result, error) {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxFiles <= 0 {
		cfg.MaxFiles = DefaultMaxFiles
	}
	base := path.Base(cfg.S3Path)
	if !idPattern.MatchString(cfg.ID) || cfg.S3Path == "" || base == "." || base == "/" || base == ManifestName {
		return nil, fmt.Errorf("stage: %w: id %q, path %q", ErrInvalid, cfg.ID, cfg.S3Path)
	}
	if _, err := checksum.Decode(cfg.CRC64NVME); err != nil {
		return nil, fmt.Errorf("stage %s: %w: %w", cfg.ID, ErrInvalid, err)
	}
	var single string
	var fm format
	if cfg.Unpack {
		var ok bool
		if fm, single, ok = formatOf(base); !ok {
			return nil, fmt.Errorf("stage %s: %w: cannot unpack %s (unknown extension)", cfg.ID, ErrInvalid, base)
		}
		if (fm == fmtGz || fm == fmtZst) && (single == "" || single == ManifestName) {
			return nil, fmt.Errorf("stage %s: %w: %s would unpack to an empty or reserved name", cfg.ID, ErrInvalid, base)
		}
	}
	host, err := filepath.Abs(cfg.HostPath)
	if err != nil {
		return nil, fmt.Errorf("stage %s: %w", cfg.ID, err)
	}
	if fi, err := os.Stat(host); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("stage %s: refdata host path %s is not a directory: %w", cfg.ID, host, err)
	}
	unlock, err := lock(ctx, filepath.Join(host, "."+cfg.ID+".lock"))
	if err != nil {
		return nil, fmt.Errorf("stage %s: %w", cfg.ID, err)
	}
	defer unlock()

	final := filepath.Join(host, cfg.ID)
	if _, err := os.Lstat(final); err == nil {
		m, err := checkPublished(final, cfg)
		if err != nil {
			return nil, fmt.Errorf("stage %s: %w", cfg.ID, err)
		}
		return &Result{Dir: final, Manifest: *m, Existing: true}, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("stage %s: %w", cfg.ID, err)
	}

	tmp, dlDir := final+".tmp", final+".download"
	// Leftovers of a stager that died (we hold the lock: no live one uses them).
	for _, d := range []string{tmp, dlDir} {
		if err := os.RemoveAll(d); err != nil {
			return nil, fmt.Errorf("stage %s: remove leftover %s: %w", cfg.ID, d, err)
		}
	}
	defer os.RemoveAll(dlDir)
	published := false
	defer func() {
		if !published {
			_ = os.RemoveAll(tmp)
		}
	}()
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("stage %s: %w", cfg.ID, err)
	}
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return nil, fmt.Errorf("stage %s: %w", cfg.ID, err)
	}
	defer root.Close()

	m := Manifest{ID: cfg.ID, S3Path: cfg.S3Path, CRC64NVME: cfg.CRC64NVME, Unpack: cfg.Unpack, Files: []File{}}
	if !cfg.Unpack {
		if err := dl.Download(ctx, transfer.Download{S3Path: cfg.S3Path, CRC64NVME: cfg.CRC64NVME, Dest: filepath.Join(tmp, base)}); err != nil {
			return nil, fmt.Errorf("stage %s: %w", cfg.ID, err)
		}
		fi, err := root.Lstat(base)
		if err != nil {
			return nil, fmt.Errorf("stage %s: %w", cfg.ID, err)
		}
		if err := root.Chmod(base, 0o644); err != nil {
			return nil, fmt.Errorf("stage %s: %w", cfg.ID, err)
		}
		m.Files = append(m.Files, File{Path: base, Size: fi.Size(), CRC64NVME: cfg.CRC64NVME})
	} else {
		archive := filepath.Join(dlDir, base)
		if err := dl.Download(ctx, transfer.Download{S3Path: cfg.S3Path, CRC64NVME: cfg.CRC64NVME, Dest: archive}); err != nil {
			return nil, fmt.Errorf("stage %s: %w", cfg.ID, err)
		}
		x := newExtractor(root, cfg.MaxBytes, cfg.MaxFiles)
		if err := x.unpack(ctx, archive, fm, single); err != nil {
			return nil, fmt.Errorf("stage %s: unpack %s: %w", cfg.ID, base, err)
		}
		m.Files, m.Symlinks = x.manifest()
		if err := os.RemoveAll(dlDir); err != nil {
			return nil, fmt.Errorf("stage %s: %w", cfg.ID, err)
		}
	}
	for _, f := range m.Files {
		m.Bytes += f.Size
	}
	m.StagedOn = time.Now().UTC()
	if err := writeManifest(root, m); err != nil {
		return nil, fmt.Errorf("stage %s: %w", cfg.ID, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("stage %s: %w", cfg.ID, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, fmt.Errorf("stage %s: publish: %w", cfg.ID, err)
	}
	published = true
	if err := syncDir(host); err != nil {
		return nil, fmt.Errorf("stage %s: publish: %w", cfg.ID, err)
	}
	return &Result{Dir: final, Manifest: m}, nil
}

func writeManifest(root *os.Root, m Manifest) error {
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	f, err := root.OpenFile(ManifestName, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		_ = f.Close()
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	return syncDir(root.Name())
}

// ReadManifest reads the manifest of a published tree.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", dir, err)
	}
	return &m, nil
}

// checkPublished accepts an existing tree whose manifest describes the same request and whose
// files still have their recorded sizes (CRCs are not recomputed: that would read terabytes).
func checkPublished(dir string, cfg Config) (*Manifest, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %s exists without a valid manifest: %w", ErrPublished, dir, err)
	}
	if m.ID != cfg.ID || m.S3Path != cfg.S3Path || m.CRC64NVME != cfg.CRC64NVME || m.Unpack != cfg.Unpack {
		return nil, fmt.Errorf("%w: %s holds %s (crc %s, unpack %t), not %s (crc %s, unpack %t)", ErrPublished, dir,
			m.S3Path, m.CRC64NVME, m.Unpack, cfg.S3Path, cfg.CRC64NVME, cfg.Unpack)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	for _, f := range m.Files {
		fi, err := root.Lstat(f.Path)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != f.Size {
			return nil, fmt.Errorf("%w: %s: %s is missing or changed", ErrPublished, dir, f.Path)
		}
	}
	return m, nil
}

// lock takes an exclusive flock on file, waiting until ctx ends.
func lock(ctx context.Context, file string) (func(), error) {
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", file, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", file, context.Cause(ctx))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func sortedFiles(m map[string]File) []File {
	out := make([]File, 0, len(m))
	for _, f := range m {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return out
}
