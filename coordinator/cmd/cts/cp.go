package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/kbase/cts/shared/checksum"
	"github.com/kbase/cts/shared/transfer"
)

// The S3 commands (cp, checksum) talk to S3 directly with the usual AWS settings: the
// AWS_* variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
// AWS_PROFILE) and the shared files (~/.aws/config, ~/.aws/credentials), as the AWS SDKs
// read them. A configured endpoint (a store that is not AWS: Ceph, MinIO, the dev site) is
// spoken to with path-style addressing.

func s3Commands() []*command {
	return []*command{
		{name: "cp", args: "SRC DST [-r]",
			summary: "copy files between here and S3 (bucket/key or s3://bucket/key) with their CRC64/NVME: uploads store it, downloads are checked against it and resume",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				f := &cpFlags{}
				fs.BoolVar(&f.recursive, "r", false, "copy a folder and everything below it")
				fs.BoolVar(&f.quiet, "q", false, "print nothing but errors, even on a terminal")
				fs.IntVar(&f.concurrency, "concurrency", transfer.DefaultConcurrency, "files moved at once")
				fs.Int64Var(&f.partSize, "part-size", transfer.DefaultPartSize, "multipart part size in `bytes` (uploads)")
				fs.Int64Var(&f.threshold, "multipart-threshold", transfer.DefaultMultipartThreshold, "files above this many `bytes` are uploaded in parallel parts")
				return func(c *cli, args []string) error {
					if len(args) != 2 {
						return usagef("want SRC and DST, got %d arguments", len(args))
					}
					return copyFiles(c, f, args[0], args[1])
				}
			}},
		{name: "checksum", args: "BUCKET/KEY [--add]",
			summary: "print the CRC64/NVME S3 stores for an object; --add gives one to an object that has none",
			setup: func(fs *flag.FlagSet) func(*cli, []string) error {
				add := fs.Bool("add", false, "give the object a CRC64/NVME if it has none, by writing it again with one")
				file := fs.Bool("file", false, "the argument is a local file: print its CRC64/NVME")
				return func(c *cli, args []string) error {
					p, err := oneArg(args, "S3 path")
					if err != nil {
						return err
					}
					if *file {
						sum, _, err := checksum.OfFile(p)
						if err != nil {
							return err
						}
						fmt.Fprintln(c.stdout, sum)
						return nil
					}
					return checksumCommand(c, p, *add)
				}
			}},
	}
}

type cpFlags struct {
	recursive, quiet    bool
	concurrency         int
	partSize, threshold int64
}

// s3Location is a parsed S3 path.
type s3Location struct {
	bucket, key string
}

func (l s3Location) String() string { return l.bucket + "/" + l.key }

// parseS3 parses "bucket/key", "bucket/prefix/", "bucket" or the same with "s3://".
func parseS3(p string) (s3Location, error) {
	rest := strings.TrimPrefix(p, "s3://")
	bucket, key, _ := strings.Cut(rest, "/")
	if bucket == "" || strings.ContainsAny(bucket, " \\") {
		return s3Location{}, fmt.Errorf("%q is not an S3 path (bucket/key)", p)
	}
	return s3Location{bucket: bucket, key: key}, nil
}

// s3Client builds an S3 client from the usual AWS settings, read through c.getenv: the
// AWS_* variables first, then the profile (AWS_PROFILE) of the shared files.
func (c *cli) s3Client() (*s3.Client, error) {
	env := func(keys ...string) string {
		for _, k := range keys {
			if v := strings.TrimSpace(c.getenv(k)); v != "" {
				return v
			}
		}
		return ""
	}
	// No EC2 instance metadata: cts runs on people's machines, where asking 169.254.169.254
	// for credentials only delays the "no credentials" message.
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithEC2IMDSClientEnableState(imds.ClientDisabled)}
	if home := env("HOME"); home != "" {
		opts = append(opts,
			awsconfig.WithSharedConfigFiles([]string{firstOf(env("AWS_CONFIG_FILE"), filepath.Join(home, ".aws", "config"))}),
			awsconfig.WithSharedCredentialsFiles([]string{firstOf(env("AWS_SHARED_CREDENTIALS_FILE"), filepath.Join(home, ".aws", "credentials"))}))
	}
	if p := env("AWS_PROFILE"); p != "" {
		opts = append(opts, awsconfig.WithSharedConfigProfile(p))
	}
	if r := env("AWS_REGION", "AWS_DEFAULT_REGION"); r != "" {
		opts = append(opts, awsconfig.WithRegion(r))
	}
	if ak, sk := env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"); ak != "" && sk != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(ak, sk, env("AWS_SESSION_TOKEN"))))
	}
	if ep := env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"); ep != "" {
		opts = append(opts, awsconfig.WithBaseEndpoint(ep))
	}
	cfg, err := awsconfig.LoadDefaultConfig(c.ctx, opts...)
	if err != nil {
		return nil, configErrorf("S3 settings: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Credentials == nil {
		return nil, configErrorf("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (on a dev site: source .dev/env)")
	}
	if _, err := cfg.Credentials.Retrieve(c.ctx); err != nil {
		return nil, configErrorf("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (on a dev site: source .dev/env)")
	}
	return s3.NewFromConfig(cfg, transfer.TuneOptions, func(o *s3.Options) {
		if o.BaseEndpoint != nil {
			o.UsePathStyle = true // stores other than AWS rarely have per-bucket host names
		}
	}), nil
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// copyFiles is `cts cp`. The source decides the direction: a local file or folder that exists
// is uploaded; anything else is an S3 path to download.
func copyFiles(c *cli, f *cpFlags, src, dst string) error {
	if strings.HasPrefix(src, "s3://") && strings.HasPrefix(dst, "s3://") {
		return usagef("both SRC and DST are S3 paths: cts cp copies between this machine and S3")
	}
	upload := false
	if !strings.HasPrefix(src, "s3://") {
		if _, err := os.Stat(src); err == nil {
			upload = true
		}
	}
	s3c, err := c.s3Client()
	if err != nil {
		return err
	}
	if upload {
		to, err := parseS3(dst)
		if err != nil {
			return usagef("DST: %v", err)
		}
		return uploadFiles(c, f, s3c, src, to)
	}
	from, err := parseS3(src)
	if err != nil || (!strings.HasPrefix(src, "s3://") && !strings.Contains(src, "/")) {
		return usagef("SRC %s: no such local file or folder, and not an S3 path (bucket/key)", src)
	}
	if strings.HasPrefix(dst, "s3://") {
		return usagef("SRC %s is not a local file or folder, and DST is an S3 path: one side must be on this machine", src)
	}
	return downloadFiles(c, f, s3c, from, dst)
}

// uploadFiles uploads a file, or a folder with -r.
func uploadFiles(c *cli, f *cpFlags, s3c *s3.Client, src string, to s3Location) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	var ups []transfer.Upload
	var total int64
	switch {
	case st.Mode().IsRegular():
		key := to.key
		if key == "" || strings.HasSuffix(key, "/") {
			key += filepath.Base(src)
		}
		ups = append(ups, transfer.Upload{Source: src, S3Path: to.bucket + "/" + key})
		total = st.Size()
	case st.IsDir():
		if !f.recursive {
			return usagef("%s is a folder: add -r to copy it and everything below it", src)
		}
		prefix := to.key
		if prefix != "" && !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() {
				if !d.IsDir() {
					fmt.Fprintf(c.stderr, "cts cp: skipping %s: not a regular file\n", p)
				}
				return nil
			}
			rel, err := filepath.Rel(src, p)
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			total += info.Size()
			ups = append(ups, transfer.Upload{Source: p, S3Path: to.bucket + "/" + prefix + filepath.ToSlash(rel)})
			return nil
		})
		if err != nil {
			return err
		}
		if len(ups) == 0 {
			return usagef("%s holds no files", src)
		}
	default:
		return usagef("%s is not a regular file or a folder", src)
	}
	bar := newProgressBar(c, f.quiet, "upload", len(ups), total)
	tc := transfer.New(s3c, transfer.Config{Concurrency: f.concurrency, PartSize: f.partSize, MultipartThreshold: f.threshold, OnProgress: bar.update})
	start := time.Now()
	res, err := tc.UploadAll(c.ctx, ups)
	bar.done()
	if err != nil {
		return s3Explain(err)
	}
	bar.summary(len(res), total, time.Since(start))
	return nil
}

// downloadFiles downloads an object, or every object below a prefix with -r.
func downloadFiles(c *cli, f *cpFlags, s3c *s3.Client, from s3Location, dst string) error {
	type object struct {
		key  string
		size int64
	}
	var objs []object
	folder := f.recursive || from.key == "" || strings.HasSuffix(from.key, "/")
	if folder {
		if !f.recursive {
			return usagef("%s is a folder: add -r to copy everything below it", from)
		}
		prefix := from.key
		if prefix != "" && !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		p := s3.NewListObjectsV2Paginator(s3c, &s3.ListObjectsV2Input{Bucket: aws.String(from.bucket), Prefix: aws.String(prefix)})
		for p.HasMorePages() {
			page, err := p.NextPage(c.ctx)
			if err != nil {
				return s3Explain(fmt.Errorf("list %s/%s: %w", from.bucket, prefix, err))
			}
			for _, o := range page.Contents {
				k := aws.ToString(o.Key)
				if strings.HasSuffix(k, "/") {
					continue // a folder marker
				}
				objs = append(objs, object{key: k, size: aws.ToInt64(o.Size)})
			}
		}
		if len(objs) == 0 {
			return &exitError{code: exitAPI, msg: fmt.Sprintf("nothing below %s/%s", from.bucket, prefix)}
		}
		from.key = prefix
	} else {
		objs = append(objs, object{key: from.key})
	}
	var downs []transfer.Download
	var total int64
	for _, o := range objs {
		loc := s3Location{bucket: from.bucket, key: o.key}
		meta, err := headCRC(c.ctx, s3c, loc)
		if err != nil {
			return err
		}
		if meta.crc == "" {
			return &exitError{code: exitAPI, msg: fmt.Sprintf("%s has no CRC64/NVME checksum, so its download cannot be verified: give it one with `cts checksum --add %s`", loc, loc)}
		}
		var dest string
		if folder {
			dest = filepath.Join(dst, filepath.FromSlash(strings.TrimPrefix(o.key, from.key)))
		} else {
			dest = dst
			if st, err := os.Stat(dst); (err == nil && st.IsDir()) || strings.HasSuffix(dst, string(os.PathSeparator)) {
				dest = filepath.Join(dst, path.Base(o.key))
			}
		}
		downs = append(downs, transfer.Download{S3Path: loc.String(), CRC64NVME: meta.crc, Size: meta.size, Dest: dest, Resume: true})
		total += meta.size
	}
	sort.Slice(downs, func(i, j int) bool { return downs[i].Dest < downs[j].Dest })
	bar := newProgressBar(c, f.quiet, "download", len(downs), total)
	tc := transfer.New(s3c, transfer.Config{Concurrency: f.concurrency, OnProgress: bar.update})
	start := time.Now()
	err := tc.DownloadAll(c.ctx, downs)
	bar.done()
	if err != nil {
		if c.ctx.Err() != nil {
			return fmt.Errorf("%w: the partial files are kept; run the same command again to resume", err)
		}
		return s3Explain(err)
	}
	bar.summary(len(downs), total, time.Since(start))
	return nil
}

type objectMeta struct {
	crc  string
	size int64
	etag string
	alg  string // the other checksum S3 holds, for messages
}

// headCRC returns an object's size and stored CRC64/NVME ("" when it has none).
func headCRC(ctx context.Context, s3c *s3.Client, loc s3Location) (objectMeta, error) {
	h, err := s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(loc.bucket), Key: aws.String(loc.key), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		return objectMeta{}, s3Explain(fmt.Errorf("%s: %w", loc, err))
	}
	m := objectMeta{crc: aws.ToString(h.ChecksumCRC64NVME), size: aws.ToInt64(h.ContentLength), etag: aws.ToString(h.ETag)}
	switch {
	case h.ChecksumCRC32 != nil:
		m.alg = "CRC32"
	case h.ChecksumCRC32C != nil:
		m.alg = "CRC32C"
	case h.ChecksumSHA1 != nil:
		m.alg = "SHA1"
	case h.ChecksumSHA256 != nil:
		m.alg = "SHA256"
	}
	return m, nil
}

// checksumCommand is `cts checksum`.
func checksumCommand(c *cli, p string, add bool) error {
	loc, err := parseS3(p)
	if err != nil || loc.key == "" || strings.HasSuffix(loc.key, "/") {
		return usagef("%q is not an S3 object path (bucket/key)", p)
	}
	s3c, err := c.s3Client()
	if err != nil {
		return err
	}
	m, err := headCRC(c.ctx, s3c, loc)
	if err != nil {
		return err
	}
	if m.crc != "" {
		fmt.Fprintln(c.stdout, m.crc)
		if add {
			fmt.Fprintf(c.stderr, "cts checksum: %s already has a CRC64/NVME: nothing to add\n", loc)
		}
		return nil
	}
	if !add {
		has := "no checksum"
		if m.alg != "" {
			has = "a " + m.alg + " checksum only"
		}
		return &exitError{code: exitAPI, msg: fmt.Sprintf("%s has no CRC64/NVME checksum (S3 stores %s), so jobs cannot use it as an input: give it one with `cts checksum --add %s`", loc, has, loc)}
	}
	crc, err := addChecksum(c, s3c, loc, m)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, crc)
	return nil
}

// addChecksum writes the object again with its CRC64/NVME. S3's server-side copy could do it
// without moving the data on AWS (CopyObject with a checksum algorithm makes S3 compute one),
// but not every S3 server computes checksums on a copy (Ceph RGW, for one, stores the copy
// without one), so the object is read here, into a temporary file, and uploaded again with
// the checksum computed while reading it: S3 checks every byte against it before the new
// object replaces the old one. The object must not change meanwhile (its ETag is checked
// before the upload).
func addChecksum(c *cli, s3c *s3.Client, loc s3Location, m objectMeta) (string, error) {
	tmp, err := os.MkdirTemp("", "cts-checksum-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	local := filepath.Join(tmp, "object")
	out, err := os.Create(local)
	if err != nil {
		return "", err
	}
	obj, err := s3c.GetObject(c.ctx, &s3.GetObjectInput{Bucket: aws.String(loc.bucket), Key: aws.String(loc.key), IfMatch: aws.String(m.etag)})
	if err != nil {
		_ = out.Close()
		return "", s3Explain(fmt.Errorf("read %s: %w", loc, err))
	}
	n, err := io.Copy(out, obj.Body)
	_ = obj.Body.Close()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", loc, err)
	}
	if n != m.size {
		return "", fmt.Errorf("read %s: got %d bytes of %d: run the command again", loc, n, m.size)
	}
	now, err := headCRC(c.ctx, s3c, loc)
	if err != nil {
		return "", err
	}
	if now.etag != m.etag {
		return "", &exitError{code: exitAPI, msg: fmt.Sprintf("%s changed while it was read: nothing was written; run the command again", loc)}
	}
	bar := newProgressBar(c, false, "rewrite", 1, n)
	tc := transfer.New(s3c, transfer.Config{OnProgress: bar.update})
	up, err := tc.Upload(c.ctx, transfer.Upload{Source: local, S3Path: loc.String()})
	bar.done()
	if err != nil {
		return "", s3Explain(err)
	}
	return up.CRC64NVME, nil
}

// s3Explain turns S3 errors into one line that says what happened and what to do: the
// operation and path, without the SDK's request details, the S3 error code, and advice.
func s3Explain(err error) error {
	var ae smithy.APIError
	code, status := "", 0
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	msg := err.Error()
	if i := strings.Index(msg, ": operation error "); i >= 0 {
		msg = msg[:i]
	}
	if code != "" && !strings.Contains(msg, code) {
		msg += " (" + code + ")"
	}
	creds := ": check the S3 credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE)"
	switch {
	case errors.Is(err, checksum.ErrMismatch):
		msg = err.Error() + ": the data changed on the way or in S3; nothing was kept"
	case code == "NoSuchBucket":
		msg += ": no such bucket"
	case code == "NoSuchKey" || code == "NotFound" || (status == 404 && code == ""):
		msg += ": no such object"
	case errors.Is(err, transfer.ErrNotFound):
		msg += ": check the bucket and key"
	case errors.Is(err, transfer.ErrAccessDenied), status == 403, code == "InvalidAccessKeyId", code == "SignatureDoesNotMatch":
		msg += creds
	case code == "" && status == 0:
		return err
	}
	return &exitError{code: exitAPI, msg: msg}
}

// progressBar draws one line on a terminal (stderr) for a copy; elsewhere it draws nothing.
type progressBar struct {
	c     *cli
	on    bool
	verb  string
	files int
	total int64
	start time.Time
	mu    sync.Mutex
	per   map[string]int64
	last  time.Time
	drawn bool
}

func newProgressBar(c *cli, quiet bool, verb string, files int, total int64) *progressBar {
	return &progressBar{c: c, on: !quiet && isTerminal(c.stderr, c.getenv), verb: verb, files: files, total: total,
		start: time.Now(), per: map[string]int64{}}
}

// update is the transfer's OnProgress: bytes of path so far.
func (b *progressBar) update(p string, n int64) {
	if !b.on {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.per[p] = n
	now := time.Now()
	if now.Sub(b.last) < 100*time.Millisecond {
		return
	}
	b.last = now
	b.draw(now)
}

func (b *progressBar) draw(now time.Time) {
	var sum int64
	for _, n := range b.per {
		sum += n
	}
	fmt.Fprintf(b.c.stderr, "\r\033[K%s", progressLine(b.verb, sum, b.total, b.files, now.Sub(b.start)))
	b.drawn = true
}

// done clears the bar.
func (b *progressBar) done() {
	if !b.on {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drawn {
		fmt.Fprint(b.c.stderr, "\r\033[K")
	}
}

// summary prints what was copied, on a terminal only.
func (b *progressBar) summary(files int, bytes int64, took time.Duration) {
	if !b.on {
		return
	}
	noun := "files"
	if files == 1 {
		noun = "file"
	}
	fmt.Fprintf(b.c.stderr, "%s: %d %s, %s in %s (%s), CRC64/NVME checked\n", b.verb, files, noun, formatBytes(bytes),
		took.Round(time.Millisecond), rate(bytes, took))
}

// progressLine renders "upload  [#####.....]  45%  12.3 MiB / 27.0 MiB  56.7 MiB/s  ETA 3s  (5 files)".
func progressLine(verb string, done, total int64, files int, elapsed time.Duration) string {
	const width = 20
	frac := 0.0
	if total > 0 {
		frac = min(1, float64(done)/float64(total))
	}
	filled := int(frac * width)
	bar := strings.Repeat("#", filled) + strings.Repeat(".", width-filled)
	eta := "-"
	if done > 0 && total > done && elapsed > 0 {
		left := time.Duration(float64(elapsed) * float64(total-done) / float64(done))
		eta = left.Round(time.Second).String()
	}
	noun := "files"
	if files == 1 {
		noun = "file"
	}
	return fmt.Sprintf("%s  [%s] %3.0f%%  %s / %s  %s  ETA %s  (%d %s)", verb, bar, frac*100, formatBytes(done), formatBytes(total),
		rate(done, elapsed), eta, files, noun)
}

// rate renders bytes per second ("56.7 MiB/s").
func rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "- /s"
	}
	return formatBytes(int64(float64(n)/d.Seconds())) + "/s"
}
