package devstack_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/minio/crc64nvme"

	"github.com/kbase/cts/coordinator/devstack"
)

// crc returns the base64 of the big-endian CRC64/NVME of b, as S3 reports it.
func crc(b []byte) string {
	var out [8]byte
	binary.BigEndian.PutUint64(out[:], crc64nvme.Checksum(b))
	return base64.StdEncoding.EncodeToString(out[:])
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func headCRC(ctx context.Context, t *testing.T, c *s3.Client, key string) (*s3.HeadObjectOutput, error) {
	t.Helper()
	return c.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String("bkt"), Key: aws.String(key), ChecksumMode: types.ChecksumModeEnabled,
	})
}

// TestS3 shares one gateway child across its subtests (starting one costs ~0.2 s).
func TestS3(t *testing.T) {
	s := devstack.TestS3(t, "bkt")
	c := s.Client()
	ctx := t.Context()

	t.Run("put with our CRC64NVME, head returns it", func(t *testing.T) {
		data := randomBytes(t, 1<<20+7)
		want := crc(data)
		put, err := c.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String("bkt"), Key: aws.String("ours"), Body: bytes.NewReader(data),
			ChecksumCRC64NVME: aws.String(want),
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := aws.ToString(put.ChecksumCRC64NVME); got != want {
			t.Errorf("put echoed %q, want %q", got, want)
		}
		if put.ChecksumType != types.ChecksumTypeFullObject {
			t.Errorf("put checksum type %q, want FULL_OBJECT", put.ChecksumType)
		}
		head, err := headCRC(ctx, t, c, "ours")
		if err != nil {
			t.Fatal(err)
		}
		if got := aws.ToString(head.ChecksumCRC64NVME); got != want {
			t.Errorf("head returned %q, want %q", got, want)
		}
		get, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bkt"), Key: aws.String("ours")})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(get.Body)
		_ = get.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Error("object read back differs from what was written")
		}
	})

	t.Run("wrong CRC64NVME is refused and nothing is stored", func(t *testing.T) {
		data := randomBytes(t, 4096)
		_, err := c.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String("bkt"), Key: aws.String("bad"), Body: bytes.NewReader(data),
			ChecksumCRC64NVME: aws.String(crc(append([]byte{1}, data...))),
		})
		if code := apiCode(err); code != "BadDigest" {
			t.Fatalf("put with wrong checksum: err = %v (code %q), want BadDigest", err, code)
		}
		_, err = headCRC(ctx, t, c, "bad")
		var nf *types.NotFound
		if !errors.As(err, &nf) {
			t.Fatalf("head after refused put: err = %v, want NotFound", err)
		}
	})

	// The cross-check of our CRC against the one S3 reports: the SDK computes the value
	// (hash/crc64 with the NVMe table), the gateway verifies and stores it.
	t.Run("S3-reported CRC64NVME equals ours", func(t *testing.T) {
		for _, size := range []int{0, 1, 8191, 3<<20 + 11} {
			data := randomBytes(t, size)
			_, err := c.PutObject(ctx, &s3.PutObjectInput{
				Bucket: aws.String("bkt"), Key: aws.String("sdk"), Body: bytes.NewReader(data),
				ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme,
			})
			if err != nil {
				t.Fatal(err)
			}
			head, err := headCRC(ctx, t, c, "sdk")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := aws.ToString(head.ChecksumCRC64NVME), crc(data); got != want {
				t.Errorf("size %d: S3 reports %q, crc64nvme computes %q", size, got, want)
			}
		}
	})

	t.Run("multipart FULL_OBJECT", func(t *testing.T) {
		parts := [][]byte{randomBytes(t, 5<<20), randomBytes(t, 5<<20), randomBytes(t, 12345)}
		whole := bytes.Join(parts, nil)
		upload := func(t *testing.T, key, final string) error {
			t.Helper()
			mp, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
				Bucket: aws.String("bkt"), Key: aws.String(key),
				ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme, ChecksumType: types.ChecksumTypeFullObject,
			})
			if err != nil {
				t.Fatal(err)
			}
			var done []types.CompletedPart
			for i, p := range parts {
				n := aws.Int32(int32(i + 1))
				up, err := c.UploadPart(ctx, &s3.UploadPartInput{
					Bucket: aws.String("bkt"), Key: aws.String(key), UploadId: mp.UploadId, PartNumber: n,
					Body: bytes.NewReader(p), ChecksumCRC64NVME: aws.String(crc(p)),
				})
				if err != nil {
					t.Fatal(err)
				}
				done = append(done, types.CompletedPart{ETag: up.ETag, PartNumber: n, ChecksumCRC64NVME: up.ChecksumCRC64NVME})
			}
			_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
				Bucket: aws.String("bkt"), Key: aws.String(key), UploadId: mp.UploadId,
				MultipartUpload:   &types.CompletedMultipartUpload{Parts: done},
				ChecksumCRC64NVME: aws.String(final), ChecksumType: types.ChecksumTypeFullObject,
			})
			if err != nil {
				_, _ = c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
					Bucket: aws.String("bkt"), Key: aws.String(key), UploadId: mp.UploadId,
				})
			}
			return err
		}
		if err := upload(t, "mp", crc(whole)); err != nil {
			t.Fatal(err)
		}
		head, err := headCRC(ctx, t, c, "mp")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := aws.ToString(head.ChecksumCRC64NVME), crc(whole); got != want {
			t.Errorf("multipart object CRC %q, want %q", got, want)
		}
		if aws.ToInt64(head.ContentLength) != int64(len(whole)) {
			t.Errorf("multipart object length %d, want %d", aws.ToInt64(head.ContentLength), len(whole))
		}
		err = upload(t, "mp-bad", crc(parts[0]))
		if code := apiCode(err); code != "BadDigest" {
			t.Errorf("complete with a wrong whole-object CRC: err = %v (code %q), want BadDigest", err, code)
		}
	})

	t.Run("SigV4 is verified", func(t *testing.T) {
		bad := s3.New(s3.Options{
			Region: s.Region, BaseEndpoint: aws.String(s.Endpoint), UsePathStyle: true,
			Credentials: credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey+"x", ""),
		})
		if _, err := bad.ListBuckets(ctx, &s3.ListBucketsInput{}); err == nil {
			t.Fatal("ListBuckets with a wrong secret succeeded")
		}
	})

	t.Run("CreateBucket twice is fine", func(t *testing.T) {
		for range 2 {
			if err := s.CreateBucket(ctx, "again"); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestS3CloseStopsChildAndKeepsCwd(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	// Two at once: each gateway lives in its own child process.
	a, err := devstack.StartS3(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := devstack.StartS3(t.Context(), t.TempDir())
	if err != nil {
		_ = a.Close()
		t.Fatal(err)
	}
	for _, s := range []*devstack.S3{a, b} {
		if _, err := s.Client().ListBuckets(t.Context(), &s3.ListBucketsInput{}); err != nil {
			t.Fatal(err)
		}
	}
	if now, _ := os.Getwd(); now != wd {
		t.Errorf("working directory changed to %s", now)
	}
	for _, s := range []*devstack.S3{a, b} {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		_, err := s.Client().ListBuckets(t.Context(), &s3.ListBucketsInput{}, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
		if err == nil {
			t.Fatal("ListBuckets after Close succeeded")
		}
	}
}

func TestS3DataSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	data := []byte("kept across restarts")
	for i := range 2 {
		s, err := devstack.StartS3(t.Context(), dir)
		if err != nil {
			t.Fatal(err)
		}
		c := s.Client()
		if i == 0 {
			err = s.CreateBucket(t.Context(), "keep")
			if err == nil {
				_, err = c.PutObject(t.Context(), &s3.PutObjectInput{
					Bucket: aws.String("keep"), Key: aws.String("k"), Body: bytes.NewReader(data),
					ChecksumCRC64NVME: aws.String(crc(data)),
				})
			}
		} else {
			var head *s3.HeadObjectOutput
			head, err = c.HeadObject(t.Context(), &s3.HeadObjectInput{
				Bucket: aws.String("keep"), Key: aws.String("k"), ChecksumMode: types.ChecksumModeEnabled,
			})
			if err == nil && aws.ToString(head.ChecksumCRC64NVME) != crc(data) {
				t.Errorf("after restart CRC %q, want %q", aws.ToString(head.ChecksumCRC64NVME), crc(data))
			}
		}
		if cerr := s.Close(); cerr != nil {
			t.Fatal(cerr)
		}
		if err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
	}
}
