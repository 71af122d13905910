package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kbase/cts/shared/checksum"
)

const mib = 1 << 20

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		size      int64
		partSize  int64
		wantParts int
	}{
		{"empty", 0, 0, 0},
		{"one byte", 1, 0, 0},
		{"threshold exactly", 8 * mib, 0, 0},
		{"threshold plus one", 8*mib + 1, 0, 1},
		{"40 MiB in parallel parts", 40 * mib, 5 * mib, 8},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var rec recorder
			var inFlight, maxInFlight atomic.Int32
			var progress []int64
			var pmu sync.Mutex
			c := newClient(t, Config{
				PartSize: tc.partSize,
				OnProgress: func(_ string, n int64) {
					pmu.Lock()
					progress = append(progress, n)
					pmu.Unlock()
				},
			}, func(req *http.Request, next s3.HTTPClient) (*http.Response, error) {
				rec.add(req)
				if op(req) == "UploadPart" {
					n := inFlight.Add(1)
					defer inFlight.Add(-1)
					for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
					}
				}
				return next.Do(req)
			})
			dir := t.TempDir()
			src, data := randomFile(t, dir, "src", tc.size)
			k := key(t, "obj")
			want := checksum.Encode(checksum.Sum(data))

			up, err := c.Upload(t.Context(), Upload{Source: src, S3Path: testBucket + "/" + k})
			if err != nil {
				t.Fatal(err)
			}
			if up != (Uploaded{S3Path: testBucket + "/" + k, CRC64NVME: want, Size: tc.size}) {
				t.Errorf("Uploaded = %+v, want CRC %s size %d", up, want, tc.size)
			}
			size, crc, err := stored(t, k)
			if err != nil || size != tc.size || crc != want {
				t.Errorf("stored object: size %d crc %q err %v; want %d %q", size, crc, err, tc.size, want)
			}

			// The data requests carry our CRC and an unsigned payload, never aws-chunked.
			dataOp := "PutObject"
			if tc.wantParts > 0 {
				dataOp = "UploadPart"
			}
			hs := rec.get(dataOp)
			if wantN := max(tc.wantParts, 1); len(hs) != wantN {
				t.Errorf("%s requests = %d, want %d", dataOp, len(hs), wantN)
			}
			for _, h := range hs {
				if got := h.Get("X-Amz-Content-Sha256"); got != "UNSIGNED-PAYLOAD" {
					t.Errorf("%s X-Amz-Content-Sha256 = %q, want UNSIGNED-PAYLOAD", dataOp, got)
				}
				if h.Get("X-Amz-Checksum-Crc64nvme") == "" || h.Get("Content-Encoding") != "" {
					t.Errorf("%s headers: checksum %q, content-encoding %q", dataOp,
						h.Get("X-Amz-Checksum-Crc64nvme"), h.Get("Content-Encoding"))
				}
			}
			if tc.wantParts > 1 && tc.partSize > 0 && maxInFlight.Load() < 2 {
				t.Errorf("parts in flight at most %d, want parallel parts", maxInFlight.Load())
			}

			checkProgress := func(phase string) {
				pmu.Lock()
				defer pmu.Unlock()
				for i := 1; i < len(progress); i++ {
					if progress[i] < progress[i-1] {
						t.Errorf("%s progress went back: %v", phase, progress)
						break
					}
				}
				if len(progress) == 0 || progress[len(progress)-1] != tc.size {
					t.Errorf("%s progress %v, want it to end at %d", phase, progress, tc.size)
				}
				if limit := tc.size/mib + 1; int64(len(progress)) > limit {
					t.Errorf("%s: %d progress calls for %d bytes, want at most %d", phase, len(progress), tc.size, limit)
				}
				progress = nil
			}
			checkProgress("upload")

			dest := filepath.Join(dir, "deep", "er", "dest")
			if err := c.Download(t.Context(), Download{S3Path: up.S3Path, CRC64NVME: up.CRC64NVME, Size: up.Size, Dest: dest}); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(dest)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("downloaded %d bytes differ from the %d uploaded", len(got), len(data))
			}
			if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o644 {
				t.Errorf("mode %v, want 0644", fi.Mode().Perm())
			}
			assertNoFile(t, dest+partSuffix)
			if g := rec.get("GetObject"); len(g) != 1 || g[0].Get("X-Amz-Checksum-Mode") != "" {
				t.Errorf("GetObject requests %v, want 1 without checksum mode", g)
			}

			checkProgress("download")
		})
	}
}

func TestDownloadWrongObject(t *testing.T) {
	t.Parallel()
	data := bytes.Repeat([]byte("cts"), 1000)
	k := key(t, "obj")
	put(t, k, data)
	good := checksum.Encode(checksum.Sum(data))
	bad := checksum.Encode(checksum.Sum([]byte("something else")))
	cases := []struct {
		name    string
		crc     string
		size    int64
		wantErr any
	}{
		{"wrong checksum", bad, 0, new(*checksum.MismatchError)},
		{"wrong checksum and right size", bad, int64(len(data)), new(*checksum.MismatchError)},
		{"wrong size", good, int64(len(data)) + 1, new(*SizeMismatchError)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var gets atomic.Int32
			c := newClient(t, Config{}, func(req *http.Request, next s3.HTTPClient) (*http.Response, error) {
				if op(req) == "GetObject" {
					gets.Add(1)
				}
				return next.Do(req)
			})
			dest := filepath.Join(t.TempDir(), "dest")
			err := c.Download(t.Context(), Download{S3Path: testBucket + "/" + k, CRC64NVME: tc.crc, Size: tc.size, Dest: dest})
			if !errors.Is(err, checksum.ErrMismatch) {
				t.Fatalf("err = %v, want a checksum.ErrMismatch", err)
			}
			switch want := tc.wantErr.(type) {
			case **checksum.MismatchError:
				if !errors.As(err, want) || (*want).Got != good || (*want).Want != bad || (*want).Path != testBucket+"/"+k {
					t.Errorf("err = %#v", err)
				}
			case **SizeMismatchError:
				if !errors.As(err, want) || (*want).Got != int64(len(data)) {
					t.Errorf("err = %#v", err)
				}
			}
			if gets.Load() != 1 {
				t.Errorf("GetObject sent %d times, want 1 (a wrong object is not retried)", gets.Load())
			}
			assertNoFile(t, dest)
			assertNoFile(t, dest+partSuffix)
		})
	}
}

func TestDownloadResumes(t *testing.T) {
	t.Parallel()
	data := bytes.Repeat([]byte("0123456789abcdef"), 3*mib/16+7)
	k := key(t, "obj")
	put(t, k, data)
	const cut = 3*mib/2 + 5
	cases := []struct {
		name  string
		stall bool
	}{
		{"connection cut", false},
		{"stalled body", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var rec recorder
			// The watchdog fires only when the stalled body says it hangs: a slow machine
			// never makes a healthy attempt look stalled.
			timers := &fakeTimers{}
			c := newClient(t, Config{}, func(req *http.Request, next s3.HTTPClient) (*http.Response, error) {
				n := rec.add(req)
				resp, err := next.Do(req)
				if err == nil && op(req) == "GetObject" && n == 1 {
					cb := &cutBody{rc: resp.Body, left: cut}
					if tc.stall {
						cb.block = req.Context().Done()
						cb.onBlock = timers.fireAll
					}
					resp.Body = cb
				}
				return resp, err
			})
			c.afterFunc = timers.afterFunc
			dest := filepath.Join(t.TempDir(), "dest")
			err := c.Download(t.Context(), Download{S3Path: testBucket + "/" + k, CRC64NVME: checksum.Encode(checksum.Sum(data)), Size: int64(len(data)), Dest: dest})
			if err != nil {
				t.Fatal(err)
			}
			gets := rec.get("GetObject")
			if len(gets) != 2 {
				t.Fatalf("GetObject sent %d times, want 2", len(gets))
			}
			if r := gets[0].Get("Range"); r != "" {
				t.Errorf("first GetObject Range = %q, want none", r)
			}
			if r, want := gets[1].Get("Range"), fmt.Sprintf("bytes=%d-", cut); r != want {
				t.Errorf("second GetObject Range = %q, want %q", r, want)
			}
			if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) {
				t.Error("resumed download differs from the object")
			}
		})
	}
}

func TestDownloadRestartsWhenObjectChanges(t *testing.T) {
	t.Parallel()
	old := bytes.Repeat([]byte("old!"), mib)
	replacement := bytes.Repeat([]byte("new?"), mib)
	k := key(t, "obj")
	put(t, k, old)
	var rec recorder
	c := newClient(t, Config{}, func(req *http.Request, next s3.HTTPClient) (*http.Response, error) {
		n := rec.add(req)
		if op(req) == "GetObject" && n == 2 {
			put(t, k, replacement) // replaced between the cut and the resume
		}
		resp, err := next.Do(req)
		if err == nil && op(req) == "GetObject" && n == 1 {
			resp.Body = &cutBody{rc: resp.Body, left: 2*mib + 3}
		}
		return resp, err
	})
	dest := filepath.Join(t.TempDir(), "dest")
	err := c.Download(t.Context(), Download{S3Path: testBucket + "/" + k, CRC64NVME: checksum.Encode(checksum.Sum(replacement)), Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	var ranges []string
	for _, h := range rec.get("GetObject") {
		ranges = append(ranges, h.Get("Range"))
	}
	if want := []string{"", fmt.Sprintf("bytes=%d-", 2*mib+3), ""}; fmt.Sprint(ranges) != fmt.Sprint(want) {
		t.Errorf("GetObject ranges %q, want %q", ranges, want)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, replacement) {
		t.Error("download is not the replacement object")
	}
}

func TestDownloadClientErrorsAreNotRetried(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		path    string
		inject  int // status to inject instead of the real answer, 0 for none
		code    string
		wantErr error
	}{
		{"missing key", testBucket + "/" + key(t, "missing"), 0, "", ErrNotFound},
		{"missing bucket", "no-such-bucket-here/x", 0, "", ErrNotFound},
		{"access denied", testBucket + "/" + key(t, "denied"), http.StatusForbidden, "AccessDenied", ErrAccessDenied},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var gets atomic.Int32
			c := newClient(t, Config{}, func(req *http.Request, next s3.HTTPClient) (*http.Response, error) {
				if op(req) == "GetObject" {
					gets.Add(1)
					if tc.inject != 0 {
						return s3Fault(req, tc.inject, tc.code), nil
					}
				}
				return next.Do(req)
			})
			dest := filepath.Join(t.TempDir(), "dest")
			err := c.Download(t.Context(), Download{S3Path: tc.path, CRC64NVME: checksum.Encode(0), Dest: dest})
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.path) {
				t.Errorf("err = %v, want %v naming %s", err, tc.wantErr, tc.path)
			}
			if gets.Load() != 1 {
				t.Errorf("GetObject sent %d times, want 1", gets.Load())
			}
			assertNoFile(t, dest+partSuffix)
		})
	}
}

func TestDownloadGivesUpAfterRetries(t *testing.T) {
	t.Parallel()
	var gets atomic.Int32
	c := newClient(t, Config{Retries: 3}, func(req *http.Request, next s3.HTTPClient) (*http.Response, error) {
		if op(req) == "GetObject" {
			gets.Add(1)
			return s3Fault(req, http.StatusServiceUnavailable, "SlowDown"), nil
		}
		return next.Do(req)
	})
	dest := filepath.Join(t.TempDir(), "dest")
	err := c.Download(t.Context(), Download{S3Path: testBucket + "/x", CRC64NVME: checksum.Encode(0), Dest: dest})
	if err == nil || !strings.Contains(err.Error(), "giving up after 3 attempts") {
		t.Errorf("err = %v, want giving up after 3 attempts", err)
	}
	if gets.Load() != 3 {
		t.Errorf("GetObject sent %d times, want 3", gets.Load())
	}
	assertNoFile(t, dest+partSuffix)
}

func TestUploadRetriesServerErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		size   int64
		dataOp string
		failOn int // the n-th request of dataOp fails once with a 500
		want   int // requests of dataOp in all
	}{
		{"single put", 3 * mib, "PutObject", 1, 2},
		{"multipart part", 12 * mib, "UploadPart", 2, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var rec recorder
			c := newClient(t, Config{PartSize: 5 * mib, PartConcurrency: 1}, func(req *http.Request, next s3.HTTPClient) (*http.Response, error) {
				if op(req) == tc.dataOp && rec.add(req) == tc.failOn {
					return s3Fault(req, http.StatusInternalServerError, "InternalError"), nil
				}
				return next.Do(req)
			})
			src, data := randomFile(t, t.TempDir(), "src", tc.size)
			k := key(t, "obj")
			up, err := c.Upload(t.Context(), Upload{Source: src, S3Path: testBucket + "/" + k})
			if err != nil {
				t.Fatal(err)
			}
			if n := len(rec.get(tc.dataOp)); n != tc.want {
				t.Errorf("%s sent %d times, want %d", tc.dataOp, n, tc.want)
			}
			if _, crc, err := stored(t, k); err != nil || crc != checksum.Encode(checksum.Sum(data)) || crc != up.CRC64NVME {
				t.Errorf("stored crc %q (err %v), uploaded %q", crc, err, up.CRC64NVME)
			}
		})
	}
}

func TestUploadFailureLeavesNoObject(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		size    int64
		fault   func(req *http.Request, cancel context.CancelFunc) *http.Response
		wantErr error
		wantN   int // UploadPart/PutObject requests for part 2 (or the PUT)
	}{
		{
			name: "persistent 500 in a middle part",
			size: 16 * mib,
			fault: func(req *http.Request, _ context.CancelFunc) *http.Response {
				return s3Fault(req, http.StatusInternalServerError, "InternalError")
			},
			wantN: 2,
		},
		{
			name: "context canceled during a part",
			size: 16 * mib,
			fault: func(req *http.Request, cancel context.CancelFunc) *http.Response {
				cancel()
				return s3Fault(req, http.StatusServiceUnavailable, "SlowDown")
			},
			wantErr: context.Canceled,
			wantN:   1,
		},
		{
			name: "server refuses a corrupted part",
			size: 16 * mib,
			fault: func(req *http.Request, _ context.CancelFunc) *http.Response {
				req.Body = flipByte{req.Body}
				return nil
			},
			wantErr: checksum.ErrMismatch,
			wantN:   1,
		},
		{
			name: "server refuses a corrupted single put",
			size: 2 * mib,
			fault: func(req *http.Request, _ context.CancelFunc) *http.Response {
				req.Body = flipByte{req.Body}
				return nil
			},
			wantErr: checksum.ErrMismatch,
			wantN:   1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var rec recorder
			c := newClient(t, Config{PartSize: 5 * mib, Retries: 2}, func(req *http.Request, next s3.HTTPClient) (*http.Response, error) {
				o := op(req)
				if o == "PutObject" || (o == "UploadPart" && req.URL.Query().Get("partNumber") == "2") {
					rec.add(req)
					if resp := tc.fault(req, cancel); resp != nil {
						return resp, nil
					}
				}
				return next.Do(req)
			})
			src, _ := randomFile(t, t.TempDir(), "src", tc.size)
			k := key(t, "obj")
			_, err := c.Upload(ctx, Upload{Source: src, S3Path: testBucket + "/" + k})
			if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), k) {
				t.Errorf("err %q does not name the path", err)
			}
			t.Logf("err: %v", err)
			n := len(rec.get("UploadPart")) + len(rec.get("PutObject"))
			if n != tc.wantN {
				t.Errorf("failing requests sent %d times, want %d", n, tc.wantN)
			}
			assertAbsent(t, k)
		})
	}
}

// flipByte corrupts the first byte of a request body on its way to the server.
type flipByte struct{ io.ReadCloser }

func (f flipByte) Read(p []byte) (int, error) {
	n, err := f.ReadCloser.Read(p)
	if n > 0 {
		p[0] ^= 0xff
	}
	return n, err
}

func TestUploadSourceChanged(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		size   int64
		dataOp string
	}{
		{"single put", mib, "PutObject"},
		{"multipart", 11 * mib, "UploadPart"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src, _ := randomFile(t, t.TempDir(), "src", tc.size)
			var once sync.Once
			c := newClient(t, Config{PartSize: 5 * mib}, func(req *http.Request, next s3.HTTPClient) (*http.Response, error) {
				resp, err := next.Do(req)
				if op(req) == tc.dataOp {
					once.Do(func() {
						// Another process rewrites the file while it is being uploaded.
						later := time.Now().Add(time.Hour)
						if err := os.Chtimes(src, later, later); err != nil {
							t.Error(err)
						}
					})
				}
				return resp, err
			})
			k := key(t, "obj")
			_, err := c.Upload(t.Context(), Upload{Source: src, S3Path: testBucket + "/" + k})
			if !errors.Is(err, ErrSourceChanged) {
				t.Fatalf("err = %v, want ErrSourceChanged", err)
			}
			assertAbsent(t, k)
		})
	}
}

func TestInvalidRequests(t *testing.T) {
	t.Parallel()
	c := newClient(t, Config{}, nil)
	dir := t.TempDir()
	good := checksum.Encode(0)
	downloads := map[string]Download{
		"no key":        {S3Path: testBucket, CRC64NVME: good, Dest: filepath.Join(dir, "a")},
		"empty bucket":  {S3Path: "/key", CRC64NVME: good, Dest: filepath.Join(dir, "a")},
		"bad checksum":  {S3Path: testBucket + "/k", CRC64NVME: "nope", Dest: filepath.Join(dir, "a")},
		"no checksum":   {S3Path: testBucket + "/k", Dest: filepath.Join(dir, "a")},
		"no dest":       {S3Path: testBucket + "/k", CRC64NVME: good},
		"negative size": {S3Path: testBucket + "/k", CRC64NVME: good, Size: -1, Dest: filepath.Join(dir, "a")},
	}
	for name, d := range downloads {
		t.Run("download "+name, func(t *testing.T) {
			if err := c.Download(t.Context(), d); !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
		})
	}
	uploads := map[string]Upload{
		"directory":   {Source: dir, S3Path: testBucket + "/k"},
		"bad s3 path": {Source: dir, S3Path: "bucket-only"},
	}
	for name, u := range uploads {
		t.Run("upload "+name, func(t *testing.T) {
			if _, err := c.Upload(t.Context(), u); !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
		})
	}
	t.Run("upload missing file", func(t *testing.T) {
		if _, err := c.Upload(t.Context(), Upload{Source: filepath.Join(dir, "nope"), S3Path: testBucket + "/k"}); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("err = %v, want os.ErrNotExist", err)
		}
	})
}

func TestAll(t *testing.T) {
	t.Parallel()
	c := newClient(t, Config{Concurrency: 3, PartSize: 5 * mib}, nil)
	dir := t.TempDir()
	sizes := []int64{0, 1, 1000, mib, 6 * mib, 11 * mib}
	var us []Upload
	datas := map[string][]byte{}
	for i, size := range sizes {
		src, data := randomFile(t, dir, fmt.Sprintf("src%d", i), size)
		p := testBucket + "/" + key(t, fmt.Sprintf("obj%d", i))
		us = append(us, Upload{Source: src, S3Path: p})
		datas[p] = data
	}
	ups, err := c.UploadAll(t.Context(), us)
	if err != nil {
		t.Fatal(err)
	}
	var ds []Download
	for i, up := range ups {
		if up.S3Path != us[i].S3Path || up.Size != sizes[i] {
			t.Errorf("result %d = %+v, want %s of %d bytes", i, up, us[i].S3Path, sizes[i])
		}
		ds = append(ds, Download{S3Path: up.S3Path, CRC64NVME: up.CRC64NVME, Size: up.Size, Dest: filepath.Join(dir, "out", fmt.Sprint(i))})
	}
	if err := c.DownloadAll(t.Context(), ds); err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if got, _ := os.ReadFile(d.Dest); !bytes.Equal(got, datas[d.S3Path]) {
			t.Errorf("%s: downloaded bytes differ", d.S3Path)
		}
	}

	t.Run("one missing object fails the batch", func(t *testing.T) {
		outDir := filepath.Join(t.TempDir(), "out")
		bad := append([]Download(nil), ds...)
		for i := range bad {
			bad[i].Dest = filepath.Join(outDir, fmt.Sprint(i))
		}
		missing := testBucket + "/" + key(t, "missing")
		bad[2].S3Path = missing
		err := c.DownloadAll(t.Context(), bad)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), missing) {
			t.Fatalf("err = %v, want ErrNotFound naming %s", err, missing)
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, errBatchFailed) {
			t.Errorf("err %v reports the cancellations it caused", err)
		}
		parts, _ := filepath.Glob(filepath.Join(outDir, "*"+partSuffix))
		if len(parts) != 0 {
			t.Errorf("part files left: %v", parts)
		}
	})
	t.Run("duplicates are refused", func(t *testing.T) {
		if err := c.DownloadAll(t.Context(), []Download{ds[1], ds[1]}); !errors.Is(err, ErrInvalid) {
			t.Errorf("DownloadAll err = %v, want ErrInvalid", err)
		}
		if _, err := c.UploadAll(t.Context(), []Upload{us[0], {Source: us[1].Source, S3Path: us[0].S3Path}}); !errors.Is(err, ErrInvalid) {
			t.Errorf("UploadAll err = %v, want ErrInvalid", err)
		}
	})
	t.Run("canceled batch", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := c.UploadAll(ctx, us)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
}

func TestNewS3ClientTLS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><ListAllMyBucketsResult><Buckets></Buckets></ListAllMyBucketsResult>`)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	for _, insecure := range []bool{false, true} {
		t.Run(fmt.Sprint("insecure=", insecure), func(t *testing.T) {
			c, err := NewS3Client(t.Context(), S3Config{Endpoint: srv.URL, AccessKey: "a", SecretKey: "b", Insecure: insecure})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			_, err = c.ListBuckets(ctx, &s3.ListBucketsInput{})
			if insecure && err != nil {
				t.Errorf("insecure client: %v", err)
			}
			if !insecure && (err == nil || transient(err)) {
				t.Errorf("secure client against a self-signed certificate: err %v (transient %v), want a permanent error", err, transient(err))
			}
		})
	}
}

func TestNewS3Client(t *testing.T) {
	t.Parallel()
	g := gateway(t)
	cases := []struct {
		name    string
		cfg     S3Config
		wantErr bool
	}{
		{"ok", S3Config{Endpoint: g.Endpoint, AccessKey: g.AccessKey, SecretKey: g.SecretKey}, false},
		{"insecure https", S3Config{Endpoint: "https://s3.example.org", AccessKey: "a", SecretKey: "b", Insecure: true}, false},
		{"no scheme", S3Config{Endpoint: "s3.example.org", AccessKey: "a", SecretKey: "b"}, true},
		{"no credentials", S3Config{Endpoint: g.Endpoint}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewS3Client(t.Context(), tc.cfg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if o := c.Options(); !o.UsePathStyle || o.Region != "us-east-1" || o.RequestChecksumCalculation != aws.RequestChecksumCalculationWhenRequired ||
				o.ResponseChecksumValidation != aws.ResponseChecksumValidationWhenRequired {
				t.Errorf("options: path style %v, region %q, checksums %v/%v", o.UsePathStyle, o.Region, o.RequestChecksumCalculation, o.ResponseChecksumValidation)
			}
			if tc.name == "ok" {
				if _, err := c.ListBuckets(t.Context(), &s3.ListBucketsInput{}); err != nil {
					t.Errorf("list buckets: %v", err)
				}
			}
		})
	}
}

// TestMemoryBounded checks that moving a file allocates far less than the file's size and that
// what it allocates does not grow with the size: no whole-file or whole-part buffering anywhere
// on the data path. It compares a 16 MiB and a 96 MiB move (2 and 12 parts of 8 MiB each way):
// one part buffered per part moved would allocate 160 MiB more for the larger one. Comparing the
// two, rather than holding one move to a fixed figure, keeps the check meaningful on a busy
// machine, where the per-request overhead (retries, new connections) grows but stays per
// request. It is not parallel, so the allocation counter sees this test
// alone. Under the race detector, whose sync.Pool drops buffers on purpose, it is skipped (the
// suite runs it without the detector too).
func TestMemoryBounded(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector (its sync.Pool drops buffers); this test runs without it")
	}
	c := newClient(t, Config{PartSize: 8 * mib}, nil)
	dir := t.TempDir()
	move := func(size int64) uint64 {
		t.Helper()
		src, _ := randomFile(t, dir, fmt.Sprintf("src-%d", size), size)
		k := key(t, fmt.Sprintf("obj-%d", size))
		// Warm up pools and connections.
		if _, err := c.Upload(t.Context(), Upload{Source: src, S3Path: testBucket + "/" + k + "-warm"}); err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		up, err := c.Upload(t.Context(), Upload{Source: src, S3Path: testBucket + "/" + k})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Download(t.Context(), Download{S3Path: up.S3Path, CRC64NVME: up.CRC64NVME, Size: up.Size, Dest: filepath.Join(dir, fmt.Sprintf("dest-%d", size))}); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("allocated %d KiB to move %d MiB up and down", alloc>>10, size>>20)
		return alloc
	}
	small, large := move(16*mib), move(96*mib)
	if large > small && large-small > 8*mib {
		t.Errorf("moving 96 MiB up and down allocated %d KiB more than moving 16 MiB (%d KiB): more than one 8 MiB part for 80 MiB more data; something buffers parts or the file",
			(large-small)>>10, small>>10)
	}
	if large > 24*mib {
		t.Errorf("allocated %d MiB to move a 96 MiB file up and down: want well under a quarter of the file", large>>20)
	}
}
