package transfer

import (
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// benchSize is the size of the benchmark file and object.
const benchSize = 256 << 20

// benchData is one 256 MiB random file, and the same bytes as an object, shared by the
// benchmarks (writing them costs more than a benchmark run).
var benchData struct {
	once sync.Once
	src  string
	up   Uploaded
	err  error
}

func benchSetup(b *testing.B) (src string, up Uploaded) {
	b.Helper()
	benchData.once.Do(func() {
		dir, err := os.MkdirTemp("", "transfer-bench-")
		if err != nil {
			benchData.err = err
			return
		}
		cleanups = append(cleanups, func() { _ = os.RemoveAll(dir) })
		benchData.src, _ = randomFile(b, dir, "src", benchSize)
		benchData.up, benchData.err = New(newS3(b, nil), Config{}).Upload(b.Context(), Upload{
			Source: benchData.src, S3Path: testBucket + "/bench/object",
		})
	})
	if benchData.err != nil {
		b.Fatal(benchData.err)
	}
	return benchData.src, benchData.up
}

func BenchmarkDownload(b *testing.B) {
	_, up := benchSetup(b)
	c := New(newS3(b, nil), Config{})
	dest := filepath.Join(b.TempDir(), "dest")
	b.SetBytes(benchSize)
	b.ResetTimer()
	for b.Loop() {
		if err := c.Download(b.Context(), Download{S3Path: up.S3Path, CRC64NVME: up.CRC64NVME, Size: up.Size, Dest: dest}); err != nil {
			b.Fatal(err)
		}
		if err := os.Remove(dest); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUpload(b *testing.B) {
	src, _ := benchSetup(b)
	c := New(newS3(b, nil), Config{})
	b.SetBytes(benchSize)
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Upload(b.Context(), Upload{Source: src, S3Path: testBucket + "/bench/upload"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawGet is the baseline for BenchmarkDownload: a plain GetObject copied to
// io.Discard, no checksum, no file.
func BenchmarkRawGet(b *testing.B) {
	_, up := benchSetup(b)
	client := newS3(b, nil)
	b.SetBytes(benchSize)
	b.ResetTimer()
	for b.Loop() {
		out, err := client.GetObject(b.Context(), &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String("bench/object")})
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, out.Body)
		_ = out.Body.Close()
		if err != nil || n != up.Size {
			b.Fatalf("copied %d bytes: %v", n, err)
		}
	}
}

// BenchmarkRawPut is the baseline for BenchmarkUpload: one PutObject of the file with an
// unsigned payload and no checksum.
func BenchmarkRawPut(b *testing.B) {
	src, _ := benchSetup(b)
	client := newS3(b, nil)
	f, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.SetBytes(benchSize)
	b.ResetTimer()
	for b.Loop() {
		_, err := client.PutObject(b.Context(), &s3.PutObjectInput{
			Bucket: aws.String(testBucket), Key: aws.String("bench/raw"),
			Body: io.NewSectionReader(f, 0, benchSize), ContentLength: aws.Int64(benchSize),
		}, dataCall)
		if err != nil {
			b.Fatal(err)
		}
	}
}
