package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kbase/cts/agent/internal/untar"
)

// DefaultMaxUnpackBytes bounds the total size of the regular files unpacked for one container
// when OCIConfig.MaxUnpackBytes is 0.
const DefaultMaxUnpackBytes int64 = 20 << 30

// maxUnpackEntries bounds the files, directories and links of one unpacked image, all layers
// together (directories created implicitly for a path count too). The largest public images
// hold a few hundred thousand; the bound keeps a hostile layer from making millions of
// directories out of a few kilobytes of headers.
const maxUnpackEntries = 2_000_000

// unpacker applies image layers, lowest first, to a root file system, with the Layers policy
// of agent/internal/untar (see its package comment for what is guaranteed and what is not
// applied): every file-system call goes through os.Root, so no entry (a "../" name, a hard
// link, or a file written through a symlink planted by an earlier entry) can reach outside the
// root. Device nodes and FIFOs are skipped with a log line.
type unpacker struct {
	x   *untar.Extractor
	err error // from untar.New: returned by every applyBlob
}

func newUnpacker(root *os.Root, limit int64, log *slog.Logger) *unpacker {
	x, err := untar.New(root, untar.Options{
		Mode:   untar.Layers,
		Limits: untar.Limits{MaxBytes: limit, MaxEntries: maxUnpackEntries},
		OnSkip: func(name string, typeflag byte) {
			log.Info("unpack: skipped a device, fifo or unknown entry", "path", name, "type", string(typeflag))
		},
	})
	return &unpacker{x: x, err: err}
}

// layerBlob opens a layer blob for apply.
type layerBlob struct {
	digest v1.Hash
	size   int64
	open   func() (io.ReadCloser, error)
}

// applyBlob verifies and applies one compressed (gzip, zstd) or plain tar layer blob. The
// digest is checked when the blob has been read to its end; if it does not match, the error
// wraps ErrDigestMismatch and the caller must discard the root (entries were confined to it).
// Refused entries wrap ErrUnsafeLayer, a layer over the bounds ErrTooLarge (and untar's).
func (u *unpacker) applyBlob(ctx context.Context, b layerBlob) error {
	if u.err != nil {
		return fmt.Errorf("layer %s: %w", b.digest, u.err)
	}
	rc, err := b.open()
	if err != nil {
		return fmt.Errorf("open layer %s: %w", b.digest, err)
	}
	defer rc.Close()
	vr := newVerifyingReader(rc, b.digest, b.size)
	tr, err := untar.Decompress(vr, untar.Detect)
	if err != nil {
		return fmt.Errorf("layer %s: %w", b.digest, err)
	}
	applyErr := u.x.Extract(ctx, tr)
	tr.Close()
	// A digest mismatch explains any other failure (a tampered tar is often also malformed),
	// so it is checked first.
	if err := vr.check(); err != nil {
		return fmt.Errorf("layer %s: %w", b.digest, err)
	}
	switch {
	case applyErr == nil:
		return nil
	case errors.Is(applyErr, untar.ErrUnsafe):
		return fmt.Errorf("layer %s: %w: %w", b.digest, ErrUnsafeLayer, applyErr)
	case errors.Is(applyErr, untar.ErrTooLarge):
		return fmt.Errorf("layer %s: %w: %w", b.digest, ErrTooLarge, applyErr)
	}
	return fmt.Errorf("layer %s: %w", b.digest, applyErr)
}
