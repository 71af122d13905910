// Package checksum owns the CRC64/NVME checksum that proves no byte changed between S3, the
// agent's disk and the user's container: computing it (fast, with github.com/minio/crc64nvme),
// its wire form, combining the CRCs of parts, and verifying a stream against an expected value.
// It does no I/O of its own beyond reading the readers it is given and imports nothing of ours.
//
// # Wire form
//
// S3 carries the checksum in the x-amz-checksum-crc64nvme header / ChecksumCRC64NVME field as
// the standard base64 (RFC 4648, padded) of the 8 big-endian bytes of the CRC: always
// EncodedLen (12) characters, e.g. "rosUhgp5mIg=" for "123456789". The CTS API, the job
// records and the agent protocol use exactly that string.
//
// # Keep the SDK's checksum code off the data path
//
// aws-sdk-go-v2 computes CRC64/NVME itself with Go's table-driven hash/crc64 (about 2 GB/s,
// ~40x slower than the assembly here) whenever it is asked to calculate or validate a
// checksum. Callers must compute the value with this package and hand the SDK the precomputed
// string (PutObject/UploadPart/CompleteMultipartUpload ChecksumCRC64NVME), and verify
// downloads with NewVerifyingReader instead of the SDK's response validation.
package checksum

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"

	"github.com/minio/crc64nvme"
)

// EncodedLen is the length of the base64 form of a CRC64/NVME (8 bytes, padded).
const EncodedLen = 12

// Size is the size of a CRC64/NVME in bytes.
const Size = 8

// Poly is the reflected CRC-64/NVME polynomial (0xAD93D23594C93659 in normal form).
// Together with an initial value and final XOR of all ones it defines the checksum.
const Poly = 0x9A6C9329AC4BC9B5

// bufSize is the read buffer of Of and of VerifyingReader.WriteTo: large enough that the
// per-call overhead of the assembly is negligible, small enough to pool freely.
const bufSize = 256 << 10

// ErrInvalidEncoding is returned (wrapped) by Decode for anything but the 12-character
// padded standard base64 of 8 bytes.
var ErrInvalidEncoding = errors.New("invalid CRC64/NVME encoding")

// ErrMismatch matches every *MismatchError with errors.Is.
var ErrMismatch = errors.New("checksum mismatch")

var bufPool = sync.Pool{New: func() any {
	b := make([]byte, bufSize)
	return &b
}}

// New returns a CRC64/NVME hash. Its Sum appends the big-endian bytes of Sum64.
func New() hash.Hash64 { return crc64nvme.New() }

// Sum returns the CRC64/NVME of b.
func Sum(b []byte) uint64 { return crc64nvme.Checksum(b) }

// Update returns the CRC64/NVME of A||p given crc, the CRC64/NVME of A (0 for nothing).
func Update(crc uint64, p []byte) uint64 { return crc64nvme.Update(crc, p) }

// Encode returns the wire form of sum: standard padded base64 of its 8 big-endian bytes.
func Encode(sum uint64) string {
	var b [Size]byte
	binary.BigEndian.PutUint64(b[:], sum)
	return base64.StdEncoding.EncodeToString(b[:])
}

// Decode parses the wire form of a CRC64/NVME. It is strict: exactly EncodedLen characters
// of padded standard base64 with zero trailing bits that decode to 8 bytes; anything else is
// an error wrapping ErrInvalidEncoding.
func Decode(s string) (uint64, error) {
	if len(s) != EncodedLen {
		return 0, fmt.Errorf("decode %q: %w: length %d, want %d", s, ErrInvalidEncoding, len(s), EncodedLen)
	}
	var b [9]byte // 12 base64 characters hold at most 9 bytes
	n, err := base64.StdEncoding.Strict().Decode(b[:], []byte(s))
	if err != nil {
		return 0, fmt.Errorf("decode %q: %w: %v", s, ErrInvalidEncoding, err)
	}
	if n != Size {
		return 0, fmt.Errorf("decode %q: %w: %d bytes, want %d", s, ErrInvalidEncoding, n, Size)
	}
	return binary.BigEndian.Uint64(b[:Size]), nil
}

// Of reads r to EOF and returns the encoded CRC64/NVME of what it read and the byte count.
// Memory is bounded by one pooled 256 KiB buffer. On a read error it returns the error
// (wrapped) with the count read so far and an empty sum.
func Of(r io.Reader) (sum string, n int64, err error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var crc uint64
	for {
		m, rerr := r.Read(buf)
		crc = crc64nvme.Update(crc, buf[:m])
		n += int64(m)
		if rerr == io.EOF {
			return Encode(crc), n, nil
		}
		if rerr != nil {
			return "", n, fmt.Errorf("checksum read: %w", rerr)
		}
	}
}

// OfFile returns the encoded CRC64/NVME and the size of the file at path.
func OfFile(path string) (sum string, n int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("checksum: %w", err)
	}
	defer f.Close()
	sum, n, err = Of(f)
	if err != nil {
		return "", n, fmt.Errorf("checksum %s: %w", path, err)
	}
	return sum, n, nil
}

// MismatchError reports data whose CRC64/NVME differs from the expected one. Want and Got
// are in wire form. errors.Is(err, ErrMismatch) is true for it.
type MismatchError struct {
	Path string // what was checked: an S3 path or a local file
	Want string // the expected checksum
	Got  string // the checksum of the bytes actually seen
}

// Error returns "checksum mismatch for <path>: expected CRC64/NVME <want>, got <got>".
func (e *MismatchError) Error() string {
	return fmt.Sprintf("checksum mismatch for %s: expected CRC64/NVME %s, got %s", e.Path, e.Want, e.Got)
}

// Is makes errors.Is(err, ErrMismatch) true.
func (e *MismatchError) Is(target error) bool { return target == ErrMismatch }

// VerifyingReader passes the bytes of an underlying reader through while computing their
// CRC64/NVME. When the underlying reader reports io.EOF and the CRC differs from the expected
// one, it returns a *MismatchError instead of io.EOF (the bytes of that last Read are still
// returned in n), and keeps returning it. Any other error of the underlying reader (e.g.
// io.ErrUnexpectedEOF on a cut connection) is returned unchanged. Not safe for concurrent use.
type VerifyingReader struct {
	r    io.Reader
	path string
	want string
	crc  uint64
	n    int64
	err  error // sticky: io.EOF or *MismatchError once the end was reached
}

var _ io.WriterTo = (*VerifyingReader)(nil)

// NewVerifyingReader returns a reader over r that checks, at EOF, that everything read had
// the CRC64/NVME want (wire form). path names the data in the error.
func NewVerifyingReader(r io.Reader, path, want string) *VerifyingReader {
	return &VerifyingReader{r: r, path: path, want: want}
}

// Read implements io.Reader; see VerifyingReader.
func (v *VerifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.crc = crc64nvme.Update(v.crc, p[:n])
	v.n += int64(n)
	if err == io.EOF {
		return n, v.finish()
	}
	return n, err
}

// WriteTo implements io.WriterTo so that io.Copy moves the data through one pooled 256 KiB
// buffer instead of its own 32 KiB one. It returns nil when the whole stream matched, a
// *MismatchError when it did not, or the first read or write error.
func (v *VerifyingReader) WriteTo(w io.Writer) (int64, error) {
	if v.err != nil {
		if v.err == io.EOF {
			return 0, nil
		}
		return 0, v.err
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var written int64
	for {
		n, rerr := v.r.Read(buf)
		if n > 0 {
			v.crc = crc64nvme.Update(v.crc, buf[:n])
			v.n += int64(n)
			m, werr := w.Write(buf[:n])
			written += int64(m)
			if werr == nil && m != n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return written, werr
			}
		}
		if rerr == io.EOF {
			if err := v.finish(); err != io.EOF {
				return written, err
			}
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
	}
}

// finish records and returns the end-of-stream result: io.EOF or a *MismatchError.
func (v *VerifyingReader) finish() error {
	if got := Encode(v.crc); got != v.want {
		v.err = &MismatchError{Path: v.path, Want: v.want, Got: got}
	} else {
		v.err = io.EOF
	}
	return v.err
}

// Sum returns the encoded CRC64/NVME of the bytes read so far.
func (v *VerifyingReader) Sum() string { return Encode(v.crc) }

// N returns the number of bytes read so far.
func (v *VerifyingReader) N() int64 { return v.n }
