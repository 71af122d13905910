package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/kbase/cts/shared/checksum"
)

// Upload is one local file to store in S3.
type Upload struct {
	// Source is the local file (a regular file).
	Source string
	// S3Path is "bucket/key"; an existing object is replaced.
	S3Path string
}

// Uploaded describes a stored object.
type Uploaded struct {
	S3Path    string
	CRC64NVME string // wire form, as stored by S3 and verified after the upload
	Size      int64
}

// cleanupTimeout bounds the abort and delete calls that run after a failure, on a context
// detached from the caller's (which may be the reason for the failure).
const cleanupTimeout = 30 * time.Second

// abortRounds is how many times an abort racing with canceled part requests is repeated.
const abortRounds = 4

// Upload stores u.Source at u.S3Path. The file's CRC64/NVME is computed here and handed to
// S3, which refuses bytes that do not match it. Files up to MultipartThreshold go in one
// PutObject; larger ones in a FULL_OBJECT-checksummed multipart upload of PartSize parts,
// PartConcurrency at a time, each part with its own CRC, their combination checked again
// with HeadObject after completion. Transient failures are retried (per part). Any failure
// after the multipart upload was created aborts it, so no partial object remains; an object
// whose stored checksum differs from ours is deleted and a *checksum.MismatchError returned;
// a source that changed while being read (size or modification time) yields
// ErrSourceChanged and no object.
func (c *Client) Upload(ctx context.Context, u Upload) (Uploaded, error) {
	bucket, key, err := splitPath(u.S3Path)
	if err != nil {
		return Uploaded{}, fmt.Errorf("upload: %w", err)
	}
	f, err := os.Open(u.Source)
	if err != nil {
		return Uploaded{}, fmt.Errorf("upload %s: %w", u.S3Path, err)
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return Uploaded{}, fmt.Errorf("upload %s: %w", u.S3Path, err)
	}
	if !before.Mode().IsRegular() {
		return Uploaded{}, fmt.Errorf("upload %s: %w: %s is not a regular file", u.S3Path, ErrInvalid, u.Source)
	}
	if before.Size() > maxParts*maxPartSize {
		return Uploaded{}, fmt.Errorf("upload %s: %w: %s is larger than S3 allows", u.S3Path, ErrInvalid, u.Source)
	}
	up := &upload{c: c, f: f, before: before, size: before.Size(), bucket: bucket, key: key, path: u.S3Path}
	var crc uint64
	if up.size <= c.cfg.MultipartThreshold {
		crc, err = up.single(ctx)
	} else {
		crc, err = up.multipart(ctx)
	}
	if err != nil {
		return Uploaded{}, err
	}
	return Uploaded{S3Path: u.S3Path, CRC64NVME: checksum.Encode(crc), Size: up.size}, nil
}

// upload is the state of one Upload.
type upload struct {
	c           *Client
	f           *os.File
	before      fs.FileInfo
	size        int64
	bucket, key string
	path        string
}

// single uploads the whole file with one PutObject carrying its precomputed CRC.
func (u *upload) single(ctx context.Context) (uint64, error) {
	crc, err := crcOf(io.NewSectionReader(u.f, 0, u.size))
	if err != nil {
		return 0, fmt.Errorf("upload %s: %w", u.path, err)
	}
	enc := checksum.Encode(crc)
	var out *s3.PutObjectOutput
	err = u.c.withRetry(ctx, func(actx context.Context, kick func()) (bool, error) {
		o, err := u.c.s3.PutObject(actx, &s3.PutObjectInput{
			Bucket:            &u.bucket,
			Key:               &u.key,
			Body:              &kickReader{r: io.NewSectionReader(u.f, 0, u.size), kick: kick},
			ContentLength:     aws.Int64(u.size),
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme,
			ChecksumCRC64NVME: &enc,
		}, dataCall)
		out = o
		return false, err
	})
	if err != nil {
		if cerr := u.unchanged(); cerr != nil {
			return 0, cerr // the server refused bytes that no longer matched our CRC
		}
		return 0, s3Error("upload", u.path, err)
	}
	if err := u.unchanged(); err != nil {
		return 0, u.remove(ctx, err)
	}
	if got := aws.ToString(out.ChecksumCRC64NVME); got != "" {
		if got != enc {
			return 0, u.remove(ctx, &checksum.MismatchError{Path: u.path, Want: enc, Got: got})
		}
		u.c.progress(u.path, u.size)
		return crc, nil
	}
	// The server did not echo the checksum: ask for the stored one.
	if err := u.verify(ctx, enc); err != nil {
		return 0, u.remove(ctx, err)
	}
	u.c.progress(u.path, u.size)
	return crc, nil
}

// multipart uploads the file in parts under a FULL_OBJECT CRC64/NVME.
func (u *upload) multipart(ctx context.Context) (crc uint64, err error) {
	ps := u.c.partSize(u.size)
	n := int((u.size + ps - 1) / ps)
	created, err := u.c.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:            &u.bucket,
		Key:               &u.key,
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme,
		ChecksumType:      types.ChecksumTypeFullObject,
	})
	if err != nil {
		return 0, s3Error("upload", u.path, err)
	}
	uploadID := created.UploadId
	completed := false
	defer func() {
		if completed {
			return
		}
		if aerr := u.abort(ctx, uploadID); aerr != nil {
			err = errors.Join(err, aerr)
		}
	}()

	// A failed part stops new parts from starting but does not cancel those in flight: the
	// abort must come after the server has finished every part request, or a part stored
	// after the abort would bring the upload back. Only the caller's ctx cuts them short.
	parts := make([]types.CompletedPart, n)
	crcs := make([]uint64, n)
	var sent atomic.Int64
	var failed atomic.Bool
	var g errgroup.Group
	g.SetLimit(u.c.cfg.PartConcurrency)
	for i := range n {
		if failed.Load() || ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if failed.Load() || ctx.Err() != nil {
				return nil
			}
			off := int64(i) * ps
			length := min(ps, u.size-off)
			part, pcrc, err := u.part(ctx, uploadID, int32(i+1), off, length)
			if err != nil {
				failed.Store(true)
				return err
			}
			parts[i], crcs[i] = part, pcrc
			u.c.progress(u.path, sent.Add(length))
			return nil
		})
	}
	if err := g.Wait(); err != nil || ctx.Err() != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("upload %s: %w", u.path, ctxErr(ctx))
		}
		return 0, err
	}
	if err := u.unchanged(); err != nil {
		return 0, err
	}

	crc = crcs[0]
	for i := 1; i < n; i++ {
		crc = checksum.Combine(crc, crcs[i], min(ps, u.size-int64(i)*ps))
	}
	enc := checksum.Encode(crc)
	out, err := u.c.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:            &u.bucket,
		Key:               &u.key,
		UploadId:          uploadID,
		MultipartUpload:   &types.CompletedMultipartUpload{Parts: parts},
		ChecksumCRC64NVME: &enc,
		ChecksumType:      types.ChecksumTypeFullObject,
	})
	if err != nil {
		// An SDK retry of a Complete that did succeed sees NoSuchUpload: the object is there.
		if apiCode(err) != "NoSuchUpload" || u.verify(ctx, enc) != nil {
			return 0, s3Error("upload", u.path, err)
		}
		completed = true
		return crc, nil
	}
	completed = true
	// Some servers (Ceph) do not refuse a wrong FULL_OBJECT CRC at completion: check both
	// the answer and what is stored.
	if got := aws.ToString(out.ChecksumCRC64NVME); got != "" && got != enc {
		return 0, u.remove(ctx, &checksum.MismatchError{Path: u.path, Want: enc, Got: got})
	}
	if err := u.verify(ctx, enc); err != nil {
		return 0, u.remove(ctx, err)
	}
	return crc, nil
}

// part uploads one part, retrying transient failures, and returns it ready for Complete.
func (u *upload) part(ctx context.Context, uploadID *string, num int32, off, length int64) (types.CompletedPart, uint64, error) {
	crc, err := crcOf(io.NewSectionReader(u.f, off, length))
	if err != nil {
		return types.CompletedPart{}, 0, fmt.Errorf("upload %s part %d: %w", u.path, num, err)
	}
	enc := checksum.Encode(crc)
	var etag *string
	err = u.c.withRetry(ctx, func(actx context.Context, kick func()) (bool, error) {
		out, err := u.c.s3.UploadPart(actx, &s3.UploadPartInput{
			Bucket:        &u.bucket,
			Key:           &u.key,
			UploadId:      uploadID,
			PartNumber:    aws.Int32(num),
			Body:          &kickReader{r: io.NewSectionReader(u.f, off, length), kick: kick},
			ContentLength: aws.Int64(length),
			// ChecksumAlgorithm as well as the value: Ceph verifies the part only then.
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme,
			ChecksumCRC64NVME: &enc,
		}, dataCall)
		if err != nil {
			return false, err
		}
		if got := aws.ToString(out.ChecksumCRC64NVME); got != "" && got != enc {
			return false, &checksum.MismatchError{Path: fmt.Sprintf("%s part %d", u.path, num), Want: enc, Got: got}
		}
		etag = out.ETag
		return false, nil
	})
	if err != nil {
		var me *checksum.MismatchError
		if errors.As(err, &me) {
			return types.CompletedPart{}, 0, err
		}
		if cerr := u.unchanged(); cerr != nil {
			return types.CompletedPart{}, 0, cerr
		}
		return types.CompletedPart{}, 0, s3Error(fmt.Sprintf("upload part %d of", num), u.path, err)
	}
	return types.CompletedPart{ETag: etag, PartNumber: aws.Int32(num), ChecksumCRC64NVME: &enc}, crc, nil
}

// abort aborts the multipart upload on a context detached from ctx (which may be the reason
// for the failure). When ctx was canceled, part requests were cut short and the server may
// still store one of them after the abort, which brings the upload back (S3 documents the
// same); so the abort is then checked with ListParts after a pause and repeated as needed.
func (u *upload) abort(ctx context.Context, uploadID *string) error {
	racy := ctx.Err() != nil
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	pause := 100 * time.Millisecond
	for round := 1; ; round++ {
		_, err := u.c.s3.AbortMultipartUpload(cctx, &s3.AbortMultipartUploadInput{
			Bucket: &u.bucket, Key: &u.key, UploadId: uploadID,
		})
		if err != nil && apiCode(err) != "NoSuchUpload" {
			return fmt.Errorf("abort multipart upload of %s: %w", u.path, err)
		}
		if !racy || round == abortRounds {
			return nil
		}
		if err := sleep(cctx, pause); err != nil {
			return fmt.Errorf("abort multipart upload of %s: %w", u.path, err)
		}
		pause *= 2
		_, err = u.c.s3.ListParts(cctx, &s3.ListPartsInput{
			Bucket: &u.bucket, Key: &u.key, UploadId: uploadID, MaxParts: aws.Int32(1),
		})
		if apiCode(err) == "NoSuchUpload" || httpStatus(err) == http.StatusNotFound {
			return nil
		}
		if err != nil {
			return fmt.Errorf("abort multipart upload of %s: check: %w", u.path, err)
		}
	}
}

// verify checks with HeadObject that the stored object has our CRC and size.
func (u *upload) verify(ctx context.Context, enc string) error {
	head, err := u.c.s3.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: &u.bucket, Key: &u.key, ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return s3Error("verify upload", u.path, err)
	}
	if got := aws.ToString(head.ChecksumCRC64NVME); got != enc {
		if got == "" {
			got = "none"
		}
		return &checksum.MismatchError{Path: u.path, Want: enc, Got: got}
	}
	if got := aws.ToInt64(head.ContentLength); got != u.size {
		return &SizeMismatchError{Path: u.path, Want: u.size, Got: got}
	}
	return nil
}

// remove deletes the object just written (it must not be mistaken for a good output) and
// returns cause, joined with the delete's failure if any.
func (u *upload) remove(ctx context.Context, cause error) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if _, err := u.c.s3.DeleteObject(cctx, &s3.DeleteObjectInput{Bucket: &u.bucket, Key: &u.key}); err != nil {
		return errors.Join(cause, fmt.Errorf("delete %s: %w", u.path, err))
	}
	return cause
}

// unchanged returns ErrSourceChanged if the open file's size or modification time differ
// from when the upload started.
func (u *upload) unchanged() error {
	now, err := u.f.Stat()
	if err != nil {
		return fmt.Errorf("upload %s: %w", u.path, err)
	}
	if now.Size() != u.before.Size() || !now.ModTime().Equal(u.before.ModTime()) {
		return fmt.Errorf("upload %s: %w: %s (size %d → %d)", u.path, ErrSourceChanged,
			u.f.Name(), u.before.Size(), now.Size())
	}
	return nil
}

// crcOf returns the CRC64/NVME of r, read through a pooled buffer. Read errors are local.
func crcOf(r io.Reader) (uint64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var crc uint64
	for {
		n, err := r.Read(buf)
		crc = checksum.Update(crc, buf[:n])
		if err == io.EOF {
			return crc, nil
		}
		if err != nil {
			return 0, &localError{fmt.Errorf("read: %w", err)}
		}
	}
}

// kickReader is a request body that feeds the stall watchdog and marks read failures as
// local (not worth a retry). It stays an io.Seeker so the SDK can rewind it.
type kickReader struct {
	r    *io.SectionReader
	kick func()
}

func (k *kickReader) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	if n > 0 {
		k.kick()
	}
	if err != nil && err != io.EOF {
		err = &localError{fmt.Errorf("read source: %w", err)}
	}
	return n, err
}

func (k *kickReader) Seek(offset int64, whence int) (int64, error) {
	return k.r.Seek(offset, whence)
}
