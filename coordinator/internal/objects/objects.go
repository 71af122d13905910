// Package objects is the coordinator's S3 access: HeadObject with checksums for input checks
// and output verification, the output-directory write test, and log streaming. It never moves
// job data (agents do). S3 errors that are the caller's fault become *ctserr.Error with the
// CTS app codes of the Python service; everything else (refused or dropped connections,
// deadlines, server errors, the service's own credentials refused) is a
// *ctserr.UnavailableError naming S3 (a 503). Every call has a deadline (Config.Timeout): a
// hung S3 cannot hold a request.
package objects

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/kbase/cts/coordinator/internal/admission"
	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/ingest"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/checksum"
	"github.com/kbase/cts/shared/s3path"
)

// Config locates the S3 service.
type Config struct {
	Endpoint  string `yaml:"endpoint" env:"CTS_S3_ENDPOINT"`
	AccessKey string `yaml:"access_key" env:"CTS_S3_ACCESS_KEY"`
	SecretKey string `yaml:"-" env:"CTS_S3_SECRET_KEY" secret:"true"`
	// SecretKeyFile is read when SecretKey is empty.
	SecretKeyFile string `yaml:"secret_key_file" env:"CTS_S3_SECRET_KEY_FILE"`
	Region        string `yaml:"region" env:"CTS_S3_REGION"`
	Insecure      bool   `yaml:"insecure" env:"CTS_S3_INSECURE"`
	// Timeout bounds each call (HeadObject, the write test, a log stream until its first byte
	// and between two reads); DefaultTimeout when zero.
	Timeout time.Duration
}

// DefaultTimeout bounds each S3 call when Config.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// WriteTestObject is the name of the object written and deleted to prove a directory is
// writable (the Python service's name, so existing S3 policies keep working).
const WriteTestObject = "cdm_task_service_write_test_with_random_stuff_to_avoid_conflicts_jiaepjitgaihaiahgaqaijaeopatiaafaiezxvbmnxq"

// Objects talks to S3.
type Objects struct {
	c       *s3.Client
	timeout time.Duration
}

var (
	_ admission.Objects = (*Objects)(nil)
	_ ingest.Objects    = (*Objects)(nil)
)

// NewClient returns an S3 client for cfg: path-style addressing, static credentials, and the
// SDK's own checksum code off (we compute CRC64/NVME ourselves and pass the value).
func NewClient(cfg Config) *s3.Client {
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Bounds for calls made without a deadline of their own; Objects sets one on each call.
	tr.DialContext = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
	tr.ResponseHeaderTimeout = timeout
	tr.TLSHandshakeTimeout = timeout
	hc := &http.Client{Transport: tr}
	if cfg.Insecure {
		hc.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // configured by the operator
	}
	return s3.New(s3.Options{
		Region:                     region,
		BaseEndpoint:               aws.String(cfg.Endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, ""),
		HTTPClient:                 hc,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// New returns Objects using c, each call bounded by DefaultTimeout.
func New(c *s3.Client) *Objects { return &Objects{c: c, timeout: DefaultTimeout} }

// Open returns Objects for cfg: NewClient's client, each call bounded by cfg.Timeout.
func Open(cfg Config) *Objects {
	o := New(NewClient(cfg))
	if cfg.Timeout > 0 {
		o.timeout = cfg.Timeout
	}
	return o
}

// Client returns the underlying S3 client.
func (o *Objects) Client() *s3.Client { return o.c }

// Head returns the size and CRC64/NVME of an object.
func (o *Objects) Head(ctx context.Context, p string) (jobs.ObjectMeta, error) {
	sp, err := s3path.Parse(p)
	if err != nil {
		return jobs.ObjectMeta{}, ctserr.New(ctserr.CodeIllegalS3Path, "%s", err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	out, err := o.c.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(sp.Bucket), Key: aws.String(sp.Key), ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return jobs.ObjectMeta{}, mapErr(err, p, "Read")
	}
	m := jobs.ObjectMeta{Size: aws.ToInt64(out.ContentLength), CRC64NVME: aws.ToString(out.ChecksumCRC64NVME)}
	// A multipart object's composite checksum is not a whole-object CRC: treat as absent.
	if out.ChecksumType == types.ChecksumTypeComposite {
		m.CRC64NVME = ""
	}
	return m, nil
}

// CheckWritable writes and deletes WriteTestObject below dir.
//
// A gateway that keeps objects as files (versitygw's posix backend) removes the folders an
// object's delete leaves empty, up the path; a write creating its folders at that moment fails
// with ExistingObjectIsDirectory although nothing is wrong with its path. Concurrent submits
// whose output folders share a new parent do exactly that with their write tests, so a write
// refused that way is tried again (writeTestAttempts in all, with a short growing wait); a path
// that really names a folder is refused every time and the caller gets the refusal.
func (o *Objects) CheckWritable(ctx context.Context, dir string) error {
	p := strings.TrimSuffix(dir, "/") + "/" + WriteTestObject
	sp, err := s3path.Parse(p)
	if err != nil {
		return ctserr.New(ctserr.CodeIllegalS3Path, "%s", err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	body := []byte("cts write test")
	for attempt := 1; ; attempt++ {
		_, err = o.c.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(sp.Bucket), Key: aws.String(sp.Key), Body: bytes.NewReader(body),
			ContentLength:     aws.Int64(int64(len(body))),
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme,
			ChecksumCRC64NVME: aws.String(checksum.Encode(checksum.Sum(body))),
		})
		if err == nil || attempt == writeTestAttempts || !folderRace(err) {
			break
		}
		t := time.NewTimer(time.Duration(attempt) * 10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return mapErr(err, dir, "Write")
		case <-t.C:
		}
	}
	if err != nil {
		return mapErr(err, dir, "Write")
	}
	if _, err := o.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(sp.Bucket), Key: aws.String(sp.Key)}); err != nil {
		return mapErr(err, dir, "Write")
	}
	return nil
}

// writeTestAttempts bounds CheckWritable's writes refused by a folder race.
const writeTestAttempts = 5

// folderRace reports whether err is a file-backed gateway's refusal of a write whose folder
// another request's delete removed meanwhile (see CheckWritable).
func folderRace(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "ExistingObjectIsDirectory"
}

// Stream writes the object's bytes from seek (length bytes, or to the end when length is 0)
// to w. It returns a *ctserr.Error before writing anything when the object is missing or seek
// is past its end.
func (o *Objects) Stream(ctx context.Context, p string, seek, length int64, w func(size int64) io.Writer) error {
	sp, err := s3path.Parse(p)
	if err != nil {
		return ctserr.New(ctserr.CodeIllegalS3Path, "%s", err.Error())
	}
	in := &s3.GetObjectInput{Bucket: aws.String(sp.Bucket), Key: aws.String(sp.Key)}
	if seek > 0 || length > 0 {
		head, err := o.Head(ctx, p)
		if err != nil {
			return err
		}
		if seek > 0 && seek >= head.Size {
			return ctserr.New(ctserr.CodeIllegalParameter, "Seek parameter %d is >= file size %d", seek, head.Size)
		}
		// No range on an empty object: S3 refuses any range of it (416), and an empty log is
		// common.
		if head.Size > 0 {
			r := fmt.Sprintf("bytes=%d-", seek)
			if length > 0 {
				r = fmt.Sprintf("bytes=%d-%d", seek, seek+length-1)
			}
			in.Range = aws.String(r)
		}
	}
	// The deadline covers the request until its first byte, then each read: a log of any
	// size may stream for as long as bytes keep coming.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(o.timeout, func() { cancel(context.DeadlineExceeded) })
	defer stall.Stop()
	out, err := o.c.GetObject(ctx, in)
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %w", cause, err)
		}
		return mapErr(err, p, "Read")
	}
	defer out.Body.Close()
	_, err = io.Copy(w(aws.ToInt64(out.ContentLength)), &stallReader{r: out.Body, t: stall, d: o.timeout})
	if err != nil {
		return fmt.Errorf("stream %s: %w", p, err)
	}
	return nil
}

// stallReader re-arms a stall timer before each read.
type stallReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (s *stallReader) Read(b []byte) (int, error) {
	s.t.Reset(s.d)
	return s.r.Read(b)
}

// mapErr turns S3 errors into CTS errors by who caused them: the caller (a missing object,
// access denied, a path S3 refuses: 4xx) or nobody the caller can help (an outage: 503).
func mapErr(err error, p, op string) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NotFound", "NoSuchKey":
			return &ctserr.Error{Code: ctserr.CodeS3PathNotFound, Message: fmt.Sprintf("The path '%s' was not found on the s3 system", p), Err: err}
		case "NoSuchBucket":
			return &ctserr.Error{Code: ctserr.CodeS3BucketNotFound, Message: fmt.Sprintf("The bucket for path '%s' was not found on the s3 system", p), Err: err}
		case "AccessDenied", "Forbidden":
			return &ctserr.Error{Code: ctserr.CodeS3PathInaccessible, Message: fmt.Sprintf("%s access denied to path '%s' on the s3 system", op, p), Err: err}
		case "BadDigest", "XAmzContentChecksumMismatch", "InvalidDigest":
			return &ctserr.Error{Code: ctserr.CodeChecksumMismatch, Message: fmt.Sprintf("Checksum mismatch for upload to %s", p), Err: err}
		case "SignatureDoesNotMatch", "InvalidAccessKeyId", "XAdminUserNotFound":
			// The service's own credentials are wrong (versitygw answers an unknown key with
			// XAdminUserNotFound and a 404): a configuration fault, never the caller's, so it
			// must not fall through to the 403/404 mapping below.
			return &ctserr.UnavailableError{Dependency: ctserr.DependencyS3, Reason: "refused the service's credentials",
				Err: fmt.Errorf("s3 %s %s: s3 access credentials are invalid: %w", strings.ToLower(op), p, err)}
		case "SlowDown", "ServiceUnavailable", "RequestTimeout", "InternalError":
			return ctserr.Unavailable(ctserr.DependencyS3, fmt.Errorf("s3 %s %s: %w", strings.ToLower(op), p, err))
		}
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		switch code := re.HTTPStatusCode(); {
		case code == http.StatusNotFound:
			return &ctserr.Error{Code: ctserr.CodeS3PathNotFound, Message: fmt.Sprintf("The path '%s' was not found on the s3 system", p), Err: err}
		case code == http.StatusForbidden:
			return &ctserr.Error{Code: ctserr.CodeS3PathInaccessible, Message: fmt.Sprintf("%s access denied to path '%s' on the s3 system", op, p), Err: err}
		case code == http.StatusTooManyRequests || code >= 500:
			return ctserr.Unavailable(ctserr.DependencyS3, fmt.Errorf("s3 %s %s: %w", strings.ToLower(op), p, err))
		case code >= 400:
			// Another refusal of this request (an argument or a key S3 will not take): the
			// caller's path, not an outage.
			msg := http.StatusText(code)
			if ae != nil {
				msg = ae.ErrorCode()
			}
			return &ctserr.Error{Code: ctserr.CodeIllegalS3Path, Message: fmt.Sprintf("The s3 system refused %s of the path '%s': %s",
				strings.ToLower(op), p, msg), Err: err}
		}
	}
	if errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		// The caller went away: nobody is left to answer.
		return fmt.Errorf("s3 %s %s: %w", strings.ToLower(op), p, err)
	}
	// No answer at all: refused, reset, timed out.
	return ctserr.Unavailable(ctserr.DependencyS3, fmt.Errorf("s3 %s %s: %w", strings.ToLower(op), p, err))
}

// Listing is one page of a folder-style listing of an S3 prefix: the objects directly below it
// and its sub-folders (keys grouped at the next "/"), each as "bucket/key".
type Listing struct {
	Folders []string
	Files   []ObjectInfo
	// Next continues the listing (List's next argument); empty on the last page.
	Next string
}

// ObjectInfo is one object of a Listing.
type ObjectInfo struct {
	Path     string
	Size     int64
	Modified time.Time
}

// List lists up to limit entries (folders and objects) directly below prefix, which is
// "bucket/" or "bucket/key-prefix". next is empty for the first page, then the Next of the
// page before. It reads S3 only; the caller decides whether the caller may see prefix.
func (o *Objects) List(ctx context.Context, prefix, next string, limit int) (Listing, error) {
	bucket, key, ok := strings.Cut(prefix, "/")
	if !ok {
		return Listing{}, ctserr.New(ctserr.CodeIllegalS3Path, "The prefix '%s' has no bucket: give bucket/ or bucket/path", prefix)
	}
	if err := s3path.ValidateBucket(bucket); err != nil {
		return Listing{}, ctserr.New(ctserr.CodeIllegalS3Path, "%s", err.Error())
	}
	in := &s3.ListObjectsV2Input{
		Bucket: aws.String(bucket), Prefix: aws.String(key), Delimiter: aws.String("/"),
		MaxKeys: aws.Int32(int32(limit)),
	}
	if next != "" {
		in.ContinuationToken = aws.String(next)
	}
	out, err := o.c.ListObjectsV2(ctx, in)
	if err != nil {
		return Listing{}, mapErr(err, prefix, "List")
	}
	l := Listing{Folders: []string{}, Files: []ObjectInfo{}}
	for _, cp := range out.CommonPrefixes {
		l.Folders = append(l.Folders, bucket+"/"+aws.ToString(cp.Prefix))
	}
	for _, obj := range out.Contents {
		l.Files = append(l.Files, ObjectInfo{Path: bucket + "/" + aws.ToString(obj.Key), Size: aws.ToInt64(obj.Size),
			Modified: aws.ToTime(obj.LastModified).UTC()})
	}
	if aws.ToBool(out.IsTruncated) {
		l.Next = aws.ToString(out.NextContinuationToken)
	}
	return l, nil
}
