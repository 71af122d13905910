// Package refdata stages reference data on a worker: it downloads one S3 object with
// CRC64/NVME verification, unpacks it safely when asked (.gz, .tar.gz/.tgz, .zst,
// .tar.zst/.tzst, .tar), writes a manifest of every file (path, size, CRC64/NVME) and
// publishes the tree atomically as <HostPath>/<id>, the directory jobs get mounted read-only.
//
// Safety of unpacking: archives go through agent/internal/untar with its Tree policy (its
// package comment is the full list): everything is written through os.Root on the staging
// directory, and the whole staging fails (nothing is published) on an entry that is absolute
// or contains "..", a device or FIFO, a hard link to anything but a regular file unpacked
// earlier, a symlink whose target is absolute or resolves outside the tree (checked at
// creation and again once the tree is complete, since a later link can redirect an earlier
// one), a duplicate of an earlier entry, or the manifest's name. Config.MaxBytes bounds the
// unpacked bytes and Config.MaxFiles every file, directory and link, the directories an entry's
// path creates implicitly included; both are checked before anything over them is written.
//
// Publishing: the tree is built in <id>.tmp beside the final directory and renamed to <id>
// only once complete, manifest included; a lock file serialises stagers of one id on one
// file system. On any failure (a hostile archive, a full file system) the temporary
// directories are removed whatever their depth, and the error says what to do. Staging is
// idempotent: a published tree whose manifest matches the request is success without a
// download.
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
	"strings"
	"syscall"
	"time"

	"github.com/kbase/cts/agent/internal/untar"
	"github.com/kbase/cts/shared/checksum"
	"github.com/kbase/cts/shared/transfer"
)

// ManifestName is the manifest's file name at the top of a published tree.
const ManifestName = ".cts-manifest.json"

// Defaults of the zero Config bounds (REFDATA_MAX_BYTES, REFDATA_MAX_FILES).
//
// DefaultMaxBytes is 256 GiB: above the largest reference packages KBase apps use (GTDB-Tk's
// release 232 package needs 198 GB, 98 GB since GTDB-Tk 2.7; Kraken2's standard database is
// under 100 GB), and low enough that a decompression bomb stops long before it fills a shared
// refdata file system of a few TiB, which every job at the site mounts. A site with larger
// data raises REFDATA_MAX_BYTES in its worker_env. DefaultMaxFiles (a million files,
// directories and links) is far above those packages too (tens of thousands of files).
const (
	DefaultMaxBytes int64 = 256 << 30
	DefaultMaxFiles       = 1_000_000
)

// Errors callers can branch on with errors.Is. A corrupted download matches
// checksum.ErrMismatch.
var (
	// ErrUnsafe: an archive entry was refused (path escape, link out of the tree, device...).
	ErrUnsafe = untar.ErrUnsafe
	// ErrTooLarge: the unpacked data exceeds Config.MaxBytes or Config.MaxFiles.
	ErrTooLarge = untar.ErrTooLarge
	// ErrNoSpace: the refdata file system filled up (or the user's quota) while downloading
	// or unpacking.
	ErrNoSpace = untar.ErrNoSpace
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
	// MaxBytes bounds the bytes of the unpacked files (DefaultMaxBytes when 0), MaxFiles the
	// files, directories and links, implicit directories included (DefaultMaxFiles when 0).
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
	m, err := build(ctx, cfg, dl, host, base, fm, single)
	if err != nil {
		return nil, fmt.Errorf("stage %s: %w", cfg.ID, explain(err, cfg, host))
	}
	return &Result{Dir: final, Manifest: *m}, nil
}

// build downloads, unpacks and publishes under the lock. Whatever fails, <id>.tmp and
// <id>.download are removed, however deep and whatever their modes.
func build(ctx context.Context, cfg Config, dl Downloader, host, base string, fm format, single string) (_ *Manifest, err error) {
	final := filepath.Join(host, cfg.ID)
	tmp, dlDir := final+".tmp", final+".download"
	// Leftovers of a stager that died (we hold the lock: no live one uses them).
	for _, d := range []string{tmp, dlDir} {
		if err := untar.RemoveAll(d); err != nil {
			return nil, fmt.Errorf("remove leftover %s: %w", d, err)
		}
	}
	published := false
	defer func() {
		for _, d := range []string{tmp, dlDir} {
			if d == tmp && published {
				continue
			}
			if rerr := untar.RemoveAll(d); rerr != nil {
				err = errors.Join(err, fmt.Errorf("clean up: %w", rerr))
			}
		}
	}()
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return nil, err
	}
	defer root.Close()

	m := Manifest{ID: cfg.ID, S3Path: cfg.S3Path, CRC64NVME: cfg.CRC64NVME, Unpack: cfg.Unpack, Files: []File{}}
	if !cfg.Unpack {
		if err := dl.Download(ctx, transfer.Download{S3Path: cfg.S3Path, CRC64NVME: cfg.CRC64NVME, Dest: filepath.Join(tmp, base)}); err != nil {
			return nil, fmt.Errorf("download: %w", err)
		}
		fi, err := root.Lstat(base)
		if err != nil {
			return nil, err
		}
		if err := root.Chmod(base, 0o644); err != nil {
			return nil, err
		}
		m.Files = append(m.Files, File{Path: base, Size: fi.Size(), CRC64NVME: cfg.CRC64NVME})
	} else {
		if err := os.Mkdir(dlDir, 0o700); err != nil {
			return nil, err
		}
		archive := filepath.Join(dlDir, base)
		if err := dl.Download(ctx, transfer.Download{S3Path: cfg.S3Path, CRC64NVME: cfg.CRC64NVME, Dest: archive}); err != nil {
			return nil, fmt.Errorf("download: %w", err)
		}
		if m.Files, m.Symlinks, err = unpack(ctx, root, archive, fm, single, cfg); err != nil {
			return nil, fmt.Errorf("unpack %s: %w", base, err)
		}
		// The archive's space is needed no more.
		if err := untar.RemoveAll(dlDir); err != nil {
			return nil, err
		}
	}
	for _, f := range m.Files {
		m.Bytes += f.Size
	}
	m.StagedOn = time.Now().UTC()
	if err := writeManifest(root, m); err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	published = true
	if err := syncDir(host); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	return &m, nil
}

// explain adds to a staging error what an admin can do about it.
func explain(err error, cfg Config, host string) error {
	switch {
	case errors.Is(err, ErrNoSpace) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT):
		if !errors.Is(err, ErrNoSpace) {
			err = fmt.Errorf("%w: %w", ErrNoSpace, err)
		}
		free := "an unknown amount"
		var st syscall.Statfs_t
		if serr := syscall.Statfs(host, &st); serr == nil {
			free = untar.Size(int64(st.Bavail) * st.Bsize)
		}
		return fmt.Errorf("%w; nothing was published. The refdata file system %s has %s free now: it needs room for "+
			"the archive and its unpacked data at once; free space there (or raise the quota), then recover the staging",
			err, host, free)
	case errors.Is(err, ErrTooLarge):
		return fmt.Errorf("%w; nothing was published. The bounds are REFDATA_MAX_BYTES=%d (%s) and REFDATA_MAX_FILES=%d: "+
			"if the archive is genuine, raise them in the site's worker_env, then recover the staging",
			err, cfg.MaxBytes, untar.Size(cfg.MaxBytes), cfg.MaxFiles)
	case errors.Is(err, ErrUnsafe):
		return fmt.Errorf("%w; nothing was published: the archive must be rebuilt without such entries", err)
	}
	return err
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
			// Unlock first: a forked child shares the open file until it execs.
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); _ = f.Close() }, nil
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
