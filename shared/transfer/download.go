package transfer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kbase/cts/shared/checksum"
)

// Download is one S3 object to fetch into a local file.
type Download struct {
	// S3Path is "bucket/key".
	S3Path string
	// CRC64NVME is the object's expected checksum in wire form (12 base64 characters).
	CRC64NVME string
	// Size is the expected size in bytes; 0 means unknown (not checked).
	Size int64
	// Dest is the local file to create (parent directories are made).
	Dest string
	// Resume keeps what arrived when the download fails or is interrupted (Dest+".part",
	// with Dest+".part.json" naming the object it belongs to), and a later Download of the
	// same object (same S3 path, CRC64/NVME and size) continues from there instead of from
	// byte 0. The whole file is still verified. A part whose bytes turn out wrong is removed.
	Resume bool
}

// partMeta is what Dest+".part.json" holds: the object a kept part file belongs to.
type partMeta struct {
	S3Path    string `json:"s3_path"`
	CRC64NVME string `json:"crc64nvme"`
	Size      int64  `json:"size"`
}

// partSuffix is appended to Dest while the download is in progress.
const partSuffix = ".part"

// Download streams the object d.S3Path into d.Dest+".part" (mode 0644, parent directories
// made) while computing its CRC64/NVME, then checks the CRC (and d.Size if > 0), fsyncs and
// renames the file to d.Dest. Transient failures are retried with backoff, resuming with a
// Range request from the bytes already written; the CRC state carries over, so the whole file
// is still verified. If the object's ETag changes between attempts the download restarts from
// byte 0. A wrong object yields a *checksum.MismatchError or *SizeMismatchError (both match
// checksum.ErrMismatch) and is not retried; 4xx errors are not retried and wrap ErrNotFound or
// ErrAccessDenied where they apply. On any failure no part file and no Dest is left behind
// (a Dest that existed before is left untouched).
func (c *Client) Download(ctx context.Context, d Download) (err error) {
	bucket, key, err := splitPath(d.S3Path)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	want, err := checksum.Decode(d.CRC64NVME)
	if err != nil {
		return fmt.Errorf("download %s: %w: %w", d.S3Path, ErrInvalid, err)
	}
	if d.Dest == "" || d.Size < 0 {
		return fmt.Errorf("download %s: %w: destination %q, size %d", d.S3Path, ErrInvalid, d.Dest, d.Size)
	}
	if err := os.MkdirAll(filepath.Dir(d.Dest), 0o755); err != nil {
		return fmt.Errorf("download %s: %w", d.S3Path, err)
	}
	part := d.Dest + partSuffix
	meta := part + ".json"
	var resumed int64
	var resumedCRC uint64
	flags := os.O_RDWR | os.O_CREATE | os.O_TRUNC
	if d.Resume {
		if n, crc, ok := resumable(d, part, meta); ok {
			resumed, resumedCRC, flags = n, crc, os.O_RDWR
		}
		b, _ := json.Marshal(partMeta{S3Path: d.S3Path, CRC64NVME: d.CRC64NVME, Size: d.Size})
		if err := os.WriteFile(meta, b, 0o644); err != nil {
			return fmt.Errorf("download %s: %w", d.S3Path, err)
		}
	}
	f, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return fmt.Errorf("download %s: %w", d.S3Path, err)
	}
	open, keep := true, false
	defer func() {
		if open {
			_ = f.Close()
		}
		if keep {
			_ = os.Remove(meta)
			return
		}
		// A part kept for a later resume must hold only right bytes: never after a mismatch.
		if !d.Resume || errors.Is(err, checksum.ErrMismatch) {
			_ = os.Remove(part)
			_ = os.Remove(meta)
		}
	}()
	if resumed > 0 {
		if _, err = f.Seek(resumed, io.SeekStart); err != nil {
			return fmt.Errorf("download %s: %w", d.S3Path, err)
		}
		c.progress(d.S3Path, resumed)
	}

	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	s := &download{c: c, d: d, bucket: bucket, key: key, f: f, buf: *bp, total: -1, written: resumed, crc: resumedCRC}
	if resumed > 0 && resumed == d.Size {
		s.total = d.Size // every byte is there: no request to make
	}
	if err = c.withRetry(ctx, s.attempt); err != nil {
		var sm *SizeMismatchError
		if errors.As(err, &sm) {
			return sm
		}
		return s3Error("download", d.S3Path, err)
	}
	if d.Size > 0 && s.written != d.Size {
		err = &SizeMismatchError{Path: d.S3Path, Want: d.Size, Got: s.written}
		return err
	}
	if s.crc != want {
		err = &checksum.MismatchError{Path: d.S3Path, Want: checksum.Encode(want), Got: checksum.Encode(s.crc)}
		return err
	}
	// No fsync: the file is scratch space read only by this run's container on this node,
	// which the page cache serves the verified bytes; a node crash ends the run (and its
	// scratch space) anyway. An fsync of every input would halve download throughput.
	open = false
	if err := f.Close(); err != nil {
		return fmt.Errorf("download %s: close: %w", d.S3Path, err)
	}
	if err := os.Rename(part, d.Dest); err != nil {
		return fmt.Errorf("download %s: %w", d.S3Path, err)
	}
	keep = true
	if s.written == 0 {
		c.progress(d.S3Path, 0) // the copy loop reported every other size
	}
	return nil
}

// download is the state one Download carries across attempts.
type download struct {
	c           *Client
	d           Download
	bucket, key string
	f           *os.File
	buf         []byte
	written     int64  // bytes in the part file, all of them hashed into crc
	crc         uint64 // CRC64/NVME of the first written bytes
	etag        string // ETag of the response the written bytes came from
	total       int64  // the object's size, -1 until a response tells
}

// attempt is one GetObject, from byte s.written to the end, appended to the part file.
func (s *download) attempt(ctx context.Context, kick func()) (bool, error) {
	if s.total >= 0 && s.written == s.total && s.written > 0 {
		return false, nil // every byte arrived before the failure that ended the last attempt
	}
	in := &s3.GetObjectInput{Bucket: &s.bucket, Key: &s.key}
	if s.written > 0 {
		in.Range = aws.String("bytes=" + strconv.FormatInt(s.written, 10) + "-")
	}
	// ChecksumMode stays unset: the SDK would validate with its slow CRC, and only for
	// whole-object responses; the CRC here covers every byte, resumed or not.
	out, err := s.c.s3.GetObject(ctx, in, readCall)
	if err != nil {
		if httpStatus(err) == http.StatusRequestedRangeNotSatisfiable && s.written > 0 {
			// The object is now shorter than what we hold: it was replaced.
			if rerr := s.reset(); rerr != nil {
				return false, rerr
			}
			return false, fmt.Errorf("%w: %w", errRestart, err)
		}
		return false, err
	}
	defer out.Body.Close()
	kick()

	etag := aws.ToString(out.ETag)
	// A resumed part has no ETag yet: it belongs to an object of the same CRC64/NVME and size.
	if s.written > 0 && s.etag != "" && etag != s.etag {
		if err := s.reset(); err != nil {
			return false, err
		}
		return false, fmt.Errorf("%w: ETag %s, was %s", errRestart, etag, s.etag)
	}
	s.etag = etag

	start, total := int64(0), int64(-1)
	if out.ContentLength != nil {
		total = *out.ContentLength
	}
	if cr := aws.ToString(out.ContentRange); cr != "" {
		if start, total, err = parseContentRange(cr); err != nil {
			return false, err
		}
	}
	if start != s.written {
		if start != 0 {
			return false, fmt.Errorf("got Content-Range %q for a request from byte %d", aws.ToString(out.ContentRange), s.written)
		}
		// The server ignored the Range header and sent the whole object: take it all again.
		if err := s.reset(); err != nil {
			return false, err
		}
		s.etag = etag
	}
	if total >= 0 {
		if s.d.Size > 0 && total != s.d.Size {
			return false, &SizeMismatchError{Path: s.d.S3Path, Want: s.d.Size, Got: total}
		}
		s.total = total
	}

	var moved int64
	for {
		n, rerr := fill(out.Body, s.buf, kick)
		if n > 0 {
			if _, werr := s.f.Write(s.buf[:n]); werr != nil {
				return moved >= bufSize, &localError{fmt.Errorf("write %s: %w", s.f.Name(), werr)}
			}
			s.crc = checksum.Update(s.crc, s.buf[:n])
			s.written += int64(n)
			moved += int64(n)
			s.c.progress(s.d.S3Path, s.written)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// Progress is counted only for at least a buffer's worth, so a server that cuts
			// every response after a few bytes still runs out of attempts.
			return moved >= bufSize, rerr
		}
	}
	if s.total >= 0 && s.written != s.total {
		if s.written < s.total {
			return moved >= bufSize, io.ErrUnexpectedEOF
		}
		return false, fmt.Errorf("received %d bytes of a %d-byte object", s.written, s.total)
	}
	return true, nil
}

// resumable reports whether the part file kept by an earlier Download with Resume belongs to
// d's object, and returns its length and the CRC64/NVME of its bytes.
func resumable(d Download, part, meta string) (int64, uint64, bool) {
	b, err := os.ReadFile(meta)
	if err != nil {
		return 0, 0, false
	}
	var m partMeta
	if json.Unmarshal(b, &m) != nil || m.S3Path != d.S3Path || m.CRC64NVME != d.CRC64NVME || m.Size != d.Size {
		return 0, 0, false
	}
	f, err := os.Open(part)
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	crc, err := crcOf(f)
	if err != nil {
		return 0, 0, false
	}
	st, err := f.Stat()
	if err != nil || (d.Size > 0 && st.Size() > d.Size) {
		return 0, 0, false
	}
	return st.Size(), crc, true
}

// reset empties the part file and the CRC so the next attempt starts from byte 0.
func (s *download) reset() error {
	if err := s.f.Truncate(0); err != nil {
		return &localError{fmt.Errorf("truncate %s: %w", s.f.Name(), err)}
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return &localError{fmt.Errorf("seek %s: %w", s.f.Name(), err)}
	}
	s.written, s.crc, s.etag, s.total = 0, 0, "", -1
	return nil
}

// fill reads from r until buf is full or r fails, calling kick whenever bytes arrive. It
// batches the small reads of a network body into large, cheap file writes.
func fill(r io.Reader, buf []byte, kick func()) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if m > 0 {
			kick()
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// parseContentRange parses "bytes <first>-<last>/<total>" into first and total (-1 for "*").
func parseContentRange(s string) (first, total int64, err error) {
	bad := fmt.Errorf("malformed Content-Range %q", s)
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, bad
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, bad
	}
	firstS, lastS, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, bad
	}
	if first, err = strconv.ParseInt(firstS, 10, 64); err != nil || first < 0 {
		return 0, 0, bad
	}
	if last, err := strconv.ParseInt(lastS, 10, 64); err != nil || last < first {
		return 0, 0, bad
	}
	if tot == "*" {
		return first, -1, nil
	}
	if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total <= first {
		return 0, 0, bad
	}
	return first, total, nil
}
