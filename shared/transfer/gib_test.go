package transfer

import (
	"bufio"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"
)

// TestGiBThroughput is the measurement behind docs/benchmarks.md ("## Agent"): a 1 GiB file
// moved against the embedded S3, verified (this package) and raw (a plain GetObject into a
// file of the same kind, a plain PutObject with no checksum), interleaved in the same run,
// then the process's peak RSS (VmHWM). It takes about a minute and 2 GiB of disk, so it runs
// only with CTS_BENCH_GIB=1:
//
//	CTS_BENCH_GIB=1 go test -count=1 -run TestGiBThroughput -v ./shared/transfer/
func TestGiBThroughput(t *testing.T) {
	if os.Getenv("CTS_BENCH_GIB") != "1" {
		t.Skip("a 1 GiB measurement: set CTS_BENCH_GIB=1 to run it")
	}
	const size = 1 << 30
	rounds := 2
	if r, err := strconv.Atoi(os.Getenv("CTS_BENCH_ROUNDS")); err == nil && r > 0 {
		rounds = r
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := io.CopyN(w, rand.NewChaCha8([32]byte{1}), size); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	client := newS3(t, nil)
	x := New(client, Config{})
	single := New(client, Config{MultipartThreshold: 2 << 30})
	ctx := t.Context()
	sum := map[string]time.Duration{}
	var up Uploaded
	for range rounds {
		runs := []struct {
			name string
			fn   func() error
		}{
			{"raw PUT", func() error {
				f, err := os.Open(src)
				if err != nil {
					return err
				}
				defer f.Close()
				_, err = client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String("gib/raw"),
					Body: io.NewSectionReader(f, 0, size), ContentLength: aws.Int64(size)}, dataCall)
				return err
			}},
			{"raw multipart", func() error { return rawMultipart(ctx, client, src, size, "gib/rawmp") }},
			{"verified upload", func() error {
				var err error
				up, err = x.Upload(ctx, Upload{Source: src, S3Path: testBucket + "/gib/verified"})
				return err
			}},
			{"verified single PUT", func() error {
				_, err := single.Upload(ctx, Upload{Source: src, S3Path: testBucket + "/gib/single"})
				return err
			}},
			{"raw GET to file", func() error {
				out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String("gib/raw")})
				if err != nil {
					return err
				}
				defer out.Body.Close()
				f, err := os.Create(filepath.Join(dir, "raw-dest"))
				if err != nil {
					return err
				}
				defer os.Remove(f.Name())
				if _, err := io.Copy(f, out.Body); err != nil {
					f.Close()
					return err
				}
				return f.Close()
			}},
			{"verified download", func() error {
				dest := filepath.Join(dir, "dest")
				defer os.Remove(dest)
				return x.Download(ctx, Download{S3Path: up.S3Path, CRC64NVME: up.CRC64NVME, Size: up.Size, Dest: dest})
			}},
		}
		for _, r := range runs {
			start := time.Now()
			if err := r.fn(); err != nil {
				t.Fatalf("%s: %v", r.name, err)
			}
			sum[r.name] += time.Since(start)
		}
	}
	rate := func(n string) float64 { return float64(rounds) * size / sum[n].Seconds() / (1 << 20) }
	for _, n := range []string{"raw PUT", "raw multipart", "verified upload", "verified single PUT", "raw GET to file", "verified download"} {
		t.Logf("%-18s %7.0f MiB/s", n, rate(n))
	}
	t.Logf("upload:   verified multipart / raw multipart = %.0f %%, verified single PUT / raw PUT = %.0f %% (verified multipart / raw single PUT = %.0f %%)",
		100*rate("verified upload")/rate("raw multipart"), 100*rate("verified single PUT")/rate("raw PUT"), 100*rate("verified upload")/rate("raw PUT"))
	t.Logf("download: verified/raw = %.0f %%", 100*rate("verified download")/rate("raw GET to file"))
	t.Logf("peak RSS of the test process (VmHWM): %s", vmHWM(t))
}

func vmHWM(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	return "unknown"
}

// rawMultipart uploads a file the way the agent's multipart upload does (same part size and
// part concurrency, unsigned payload) but without any checksum: the fair baseline for the
// verified multipart upload.
func rawMultipart(ctx context.Context, client *s3.Client, src string, size int64, key string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	mp, err := client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
	if err != nil {
		return err
	}
	part := int64(DefaultPartSize)
	n := int((size + part - 1) / part)
	parts := make([]types.CompletedPart, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(DefaultPartConcurrency)
	for i := range n {
		g.Go(func() error {
			off := int64(i) * part
			l := min(part, size-off)
			out, err := client.UploadPart(gctx, &s3.UploadPartInput{Bucket: aws.String(testBucket), Key: aws.String(key),
				UploadId: mp.UploadId, PartNumber: aws.Int32(int32(i + 1)), Body: io.NewSectionReader(f, off, l),
				ContentLength: aws.Int64(l)}, dataCall)
			if err != nil {
				return err
			}
			parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	_, err = client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(key),
		UploadId: mp.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	return err
}
