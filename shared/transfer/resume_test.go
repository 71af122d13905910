package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kbase/cts/shared/checksum"
)

// TestDownloadResumeAcrossRuns interrupts a download (the caller's context ends half way, as
// Ctrl-C does) and runs it again: the second run asks only for the rest of the object, and
// the file is whole and verified. A kept part of another object, or with wrong bytes, is not
// resumed from.
func TestDownloadResumeAcrossRuns(t *testing.T) {
	t.Parallel()
	data := bytes.Repeat([]byte("0123456789abcdef"), 32*mib/16+7)
	k := key(t, "obj")
	put(t, k, data)
	crc := checksum.Encode(checksum.Sum(data))
	d := Download{S3Path: testBucket + "/" + k, CRC64NVME: crc, Size: int64(len(data)), Dest: filepath.Join(t.TempDir(), "dest"), Resume: true}

	// First run: cancelled once 2 MiB arrived.
	ctx, cancel := context.WithCancel(t.Context())
	c := newClient(t, Config{OnProgress: func(_ string, n int64) {
		if n >= 2*mib {
			cancel()
		}
	}}, nil)
	if err := c.Download(ctx, d); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted download: %v", err)
	}
	st, err := os.Stat(d.Dest + partSuffix)
	if err != nil || st.Size() < 2*mib || st.Size() >= int64(len(data)) {
		t.Fatalf("kept part: %v, %v", st, err)
	}
	assertNoFile(t, d.Dest)

	// Second run: one GetObject, from where the part ends.
	var rec recorder
	c = newClient(t, Config{}, func(req *http.Request, next s3.HTTPClient) (*http.Response, error) {
		rec.add(req)
		return next.Do(req)
	})
	if err := c.Download(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	gets := rec.get("GetObject")
	if len(gets) != 1 || gets[0].Get("Range") != fmt.Sprintf("bytes=%d-", st.Size()) {
		t.Fatalf("resumed with %d GetObject, Range %q; want one from byte %d", len(gets), gets[0].Get("Range"), st.Size())
	}
	if got, _ := os.ReadFile(d.Dest); !bytes.Equal(got, data) {
		t.Fatal("the resumed file differs from the object")
	}
	assertNoFile(t, d.Dest+partSuffix)
	assertNoFile(t, d.Dest+partSuffix+".json")

	t.Run("part of another object", func(t *testing.T) {
		d := d
		d.Dest = filepath.Join(t.TempDir(), "dest")
		if err := os.WriteFile(d.Dest+partSuffix, []byte("stale bytes of something else"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(d.Dest+partSuffix+".json", []byte(`{"s3_path":"other/key","crc64nvme":"AAAAAAAAAAA=","size":29}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := newClient(t, Config{}, nil).Download(t.Context(), d); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(d.Dest); !bytes.Equal(got, data) {
			t.Fatal("a part of another object was resumed from")
		}
	})
	t.Run("part with wrong bytes", func(t *testing.T) {
		d := d
		d.Dest = filepath.Join(t.TempDir(), "dest")
		bad := bytes.Clone(data[:mib])
		bad[10] ^= 0xff
		if err := os.WriteFile(d.Dest+partSuffix, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		meta := fmt.Sprintf(`{"s3_path":%q,"crc64nvme":%q,"size":%d}`, d.S3Path, crc, len(data))
		if err := os.WriteFile(d.Dest+partSuffix+".json", []byte(meta), 0o644); err != nil {
			t.Fatal(err)
		}
		err := newClient(t, Config{}, nil).Download(t.Context(), d)
		if !errors.Is(err, checksum.ErrMismatch) {
			t.Fatalf("err = %v, want a checksum mismatch", err)
		}
		// Nothing wrong is kept: the next run starts from byte 0 and succeeds.
		assertNoFile(t, d.Dest+partSuffix)
		if err := newClient(t, Config{}, nil).Download(t.Context(), d); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(d.Dest); !bytes.Equal(got, data) {
			t.Fatal("second run differs")
		}
	})
}
