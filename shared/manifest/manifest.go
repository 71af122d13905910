// Package manifest writes and reads outputs manifests (protocol.ManifestEntry lines) with
// constant memory, whatever their length. Writer enforces the order and computes the seal
// (count, size, CRC64/NVME); Reader checks every line, the order and, at the end, the seal
// it was given, so a truncated, extended, reordered or altered manifest is refused. Merge
// joins several sorted manifests into one sorted stream of distinct files.
//
// It does no I/O of its own beyond the io.Reader and io.Writer it is handed.
package manifest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/kbase/cts/shared/checksum"
	"github.com/kbase/cts/shared/protocol"
)

// MaxLine bounds one manifest line in bytes (an S3 path is at most 1,088 bytes, a checksum
// 12 and a size 19, plus the JSON around them).
const MaxLine = 4 << 10

// MaxCount bounds the outputs one manifest may list.
const MaxCount = 100_000_000

// ErrInvalid is matched (errors.Is) by every error about a manifest's content or seal.
var ErrInvalid = errors.New("invalid outputs manifest")

// Writer writes manifest lines to w in strictly increasing File order.
type Writer struct {
	w     *bufio.Writer
	crc   uint64
	size  int64
	count int64
	last  string
	err   error
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: bufio.NewWriterSize(w, 64<<10)} }

// Add writes one entry; its File must sort after the previous one's.
func (w *Writer) Add(e protocol.ManifestEntry) error {
	if w.err != nil {
		return w.err
	}
	if w.count > 0 && e.File <= w.last {
		return fmt.Errorf("manifest: %w: %s does not sort after %s", ErrInvalid, e.File, w.last)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	b = append(b, '\n')
	if len(b) > MaxLine {
		return fmt.Errorf("manifest: %w: the line of %s is longer than %d bytes", ErrInvalid, e.File, MaxLine)
	}
	if _, err := w.w.Write(b); err != nil {
		w.err = fmt.Errorf("manifest: %w", err)
		return w.err
	}
	w.crc = checksum.Update(w.crc, b)
	w.size += int64(len(b))
	w.count++
	w.last = e.File
	return nil
}

// Close flushes the writer and returns the manifest's seal (File left empty).
func (w *Writer) Close() (protocol.OutputsManifest, error) {
	if w.err != nil {
		return protocol.OutputsManifest{}, w.err
	}
	if err := w.w.Flush(); err != nil {
		return protocol.OutputsManifest{}, fmt.Errorf("manifest: %w", err)
	}
	return protocol.OutputsManifest{Count: w.count, Size: w.size, CRC64NVME: checksum.Encode(w.crc)}, nil
}

// Reader reads a manifest and checks it against its seal.
type Reader struct {
	r     *bufio.Reader
	seal  protocol.OutputsManifest
	crc   uint64
	size  int64
	count int64
	last  string
	done  bool
}

// NewReader returns a Reader of r that checks seal's Count, Size and CRC64NVME.
func NewReader(r io.Reader, seal protocol.OutputsManifest) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, MaxLine), seal: seal}
}

// Next returns the next entry. After the last one it returns io.EOF if the manifest matches
// its seal; any other error (wrapping ErrInvalid for the content) refuses the manifest.
func (r *Reader) Next() (protocol.ManifestEntry, error) {
	if r.done {
		return protocol.ManifestEntry{}, io.EOF
	}
	line, err := r.r.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return protocol.ManifestEntry{}, fmt.Errorf("manifest: %w: line %d is longer than %d bytes", ErrInvalid, r.count+1, MaxLine)
	case errors.Is(err, io.EOF) && len(line) > 0:
		return protocol.ManifestEntry{}, fmt.Errorf("manifest: %w: the last line has no newline (truncated?)", ErrInvalid)
	case errors.Is(err, io.EOF):
		return protocol.ManifestEntry{}, r.finish()
	case err != nil:
		return protocol.ManifestEntry{}, fmt.Errorf("manifest: read: %w", err)
	}
	r.crc = checksum.Update(r.crc, line)
	r.size += int64(len(line))
	r.count++
	if r.count > r.seal.Count || r.size > r.seal.Size {
		return protocol.ManifestEntry{}, fmt.Errorf("manifest: %w: longer than its seal (%d outputs, %d bytes)", ErrInvalid, r.seal.Count, r.seal.Size)
	}
	// Fields a later agent may add are ignored; the seal covers every byte anyway.
	var e protocol.ManifestEntry
	if err := json.Unmarshal(line, &e); err != nil {
		return protocol.ManifestEntry{}, fmt.Errorf("manifest: %w: line %d: %v", ErrInvalid, r.count, err)
	}
	if e.File == "" || e.Size < 0 {
		return protocol.ManifestEntry{}, fmt.Errorf("manifest: %w: line %d has no file or a negative size", ErrInvalid, r.count)
	}
	if r.count > 1 && e.File <= r.last {
		return protocol.ManifestEntry{}, fmt.Errorf("manifest: %w: %s is listed after %s (not sorted, or twice)", ErrInvalid, e.File, r.last)
	}
	r.last = e.File
	return e, nil
}

func (r *Reader) finish() error {
	r.done = true
	if got := checksum.Encode(r.crc); r.count != r.seal.Count || r.size != r.seal.Size || got != r.seal.CRC64NVME {
		return fmt.Errorf("manifest: %w: it has %d outputs, %d bytes and CRC64/NVME %s; the agent reported %d, %d and %s",
			ErrInvalid, r.count, r.size, got, r.seal.Count, r.seal.Size, r.seal.CRC64NVME)
	}
	return io.EOF
}

// Source is a sorted stream of entries: a Reader, or a slice (SliceSource).
type Source interface {
	// Next returns the next entry or io.EOF.
	Next() (protocol.ManifestEntry, error)
}

// SliceSource returns the entries of a slice already sorted by File.
func SliceSource(es []protocol.ManifestEntry) Source { return &sliceSource{es: es} }

type sliceSource struct{ es []protocol.ManifestEntry }

func (s *sliceSource) Next() (protocol.ManifestEntry, error) {
	if len(s.es) == 0 {
		return protocol.ManifestEntry{}, io.EOF
	}
	e := s.es[0]
	s.es = s.es[1:]
	return e, nil
}

// CollisionError: two sources list the same file with different checksums.
type CollisionError struct {
	File string
	A, B int // the sources' indexes
}

func (e *CollisionError) Error() string {
	return fmt.Sprintf("sources %d and %d list %s with different CRC64/NVME", e.A, e.B, e.File)
}

// SourceError is a source's own error (a manifest refused, a read failed) during Merge.
type SourceError struct {
	Source int
	Err    error
}

func (e *SourceError) Error() string { return fmt.Sprintf("source %d: %v", e.Source, e.Err) }

func (e *SourceError) Unwrap() error { return e.Err }

// Merge calls fn with the union of the sorted sources in File order, each file once, with the
// index of the first source that lists it. A file two sources list with different checksums
// is a *CollisionError; a source's error is a *SourceError; fn's error is returned as is.
// Memory: one entry per source.
func Merge(srcs []Source, fn func(src int, e protocol.ManifestEntry) error) error {
	heads := make([]*protocol.ManifestEntry, len(srcs))
	advance := func(i int) error {
		e, err := srcs[i].Next()
		if errors.Is(err, io.EOF) {
			heads[i] = nil
			return nil
		}
		if err != nil {
			return &SourceError{Source: i, Err: err}
		}
		heads[i] = &e
		return nil
	}
	for i := range srcs {
		if err := advance(i); err != nil {
			return err
		}
	}
	for {
		// A linear scan: jobs have few containers, and only those with outputs count.
		min := -1
		for i, h := range heads {
			if h != nil && (min < 0 || h.File < heads[min].File) {
				min = i
			}
		}
		if min < 0 {
			return nil
		}
		e := *heads[min]
		for i, h := range heads {
			if i == min || h == nil || h.File != e.File {
				continue
			}
			if h.CRC64NVME != e.CRC64NVME {
				return &CollisionError{File: e.File, A: min, B: i}
			}
			if err := advance(i); err != nil {
				return err
			}
		}
		if err := fn(min, e); err != nil {
			return err
		}
		if err := advance(min); err != nil {
			return err
		}
	}
}
