package refdata_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/kbase/cts/agent/internal/refdata"
	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/shared/checksum"
	"github.com/kbase/cts/shared/transfer"
)

const bucket = "refdata"

func TestMain(m *testing.M) {
	devstack.Main()
	os.Exit(m.Run())
}

// env is one embedded S3 with a transfer client, and a host path.
type env struct {
	s3   *s3.Client
	tc   *countingDownloader
	host string
}

type countingDownloader struct {
	c *transfer.Client
	n atomic.Int32
}

func (d *countingDownloader) Download(ctx context.Context, dl transfer.Download) error {
	d.n.Add(1)
	return d.c.Download(ctx, dl)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	gw := devstack.TestS3(t, bucket)
	c, err := transfer.NewS3Client(t.Context(), transfer.S3Config{Endpoint: gw.Endpoint, AccessKey: gw.AccessKey,
		SecretKey: gw.SecretKey, Region: gw.Region})
	if err != nil {
		t.Fatal(err)
	}
	return &env{s3: c, tc: &countingDownloader{c: transfer.New(c, transfer.Config{Retries: 1})}, host: t.TempDir()}
}

// put stores data under key and returns its CRC64/NVME.
func (e *env) put(t *testing.T, key string, data []byte) string {
	t.Helper()
	sum := checksum.Encode(checksum.Sum(data))
	_, err := e.s3.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
		Body: bytes.NewReader(data), ChecksumCRC64NVME: aws.String(sum)})
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// entry is one tar entry to build.
type entry struct {
	name, link string
	typ        byte
	body       []byte
}

func tarOf(t *testing.T, es ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write(e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func zst(t *testing.T, b []byte) []byte {
	t.Helper()
	w, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	return w.EncodeAll(b, nil)
}

// tree lists the published directory: path → content ("->target" for links, "/" for dirs).
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case rel == "." || rel == refdata.ManifestName:
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			out[rel] = "->" + l
		case fi.IsDir():
			out[rel] = "/"
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// onlyPublished checks that the host path holds nothing but the lock files and the published
// directories ids (no leftover .tmp or .download).
func onlyPublished(t *testing.T, host string, ids ...string) {
	t.Helper()
	ents, err := os.ReadDir(host)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if filepath.Ext(e.Name()) != ".lock" {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	sort.Strings(ids)
	if fmt.Sprint(names) != fmt.Sprint(ids) {
		t.Fatalf("host path holds %v, want %v", names, ids)
	}
}

func TestFormats(t *testing.T) {
	e := newEnv(t)
	archive := tarOf(t,
		entry{name: "db/", typ: tar.TypeDir},
		entry{name: "db/a.fa", typ: tar.TypeReg, body: []byte(">a\nACGT\n")},
		entry{name: "./db/sub/b.idx", typ: tar.TypeReg, body: []byte("index")},
		entry{name: "db/latest", typ: tar.TypeSymlink, link: "sub/b.idx"},
		entry{name: "db/hard", typ: tar.TypeLink, link: "db/a.fa"},
	)
	wantTree := map[string]string{"db": "/", "db/a.fa": ">a\nACGT\n", "db/sub": "/", "db/sub/b.idx": "index",
		"db/latest": "->sub/b.idx", "db/hard": ">a\nACGT\n"}
	single := []byte("one big reference file\n")
	for i, c := range []struct {
		name   string
		data   []byte
		unpack bool
		want   map[string]string
	}{
		{"genome.tar.gz", gz(t, archive), true, wantTree},
		{"genome.TGZ", gz(t, archive), true, wantTree},
		{"genome.tar.zst", zst(t, archive), true, wantTree},
		{"genome.tar", archive, true, wantTree},
		{"ref.fa.gz", gz(t, single), true, map[string]string{"ref.fa": string(single)}},
		{"ref.fa.zst", zst(t, single), true, map[string]string{"ref.fa": string(single)}},
		{"ref.fa.gz", gz(t, single), false, map[string]string{"ref.fa.gz": string(gz(t, single))}},
	} {
		t.Run(fmt.Sprintf("%s unpack=%t", c.name, c.unpack), func(t *testing.T) {
			key := fmt.Sprintf("f%d/%s", i, c.name)
			crc := e.put(t, key, c.data)
			id := fmt.Sprintf("id-%d", i)
			res, err := refdata.Stage(t.Context(), refdata.Config{ID: id, S3Path: bucket + "/" + key, CRC64NVME: crc,
				Unpack: c.unpack, HostPath: e.host}, e.tc)
			if err != nil {
				t.Fatal(err)
			}
			if res.Existing || res.Dir != filepath.Join(e.host, id) {
				t.Fatalf("result %+v", res)
			}
			if got := tree(t, res.Dir); fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("tree %q\nwant %q", got, c.want)
			}
			m, err := refdata.ReadManifest(res.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if m.ID != id || m.CRC64NVME != crc || m.Unpack != c.unpack {
				t.Fatalf("manifest %+v", m)
			}
			for _, f := range m.Files {
				b, err := os.ReadFile(filepath.Join(res.Dir, f.Path))
				if err != nil {
					t.Fatal(err)
				}
				if f.Size != int64(len(b)) || f.CRC64NVME != checksum.Encode(checksum.Sum(b)) || c.want[f.Path] != string(b) {
					t.Errorf("manifest entry %+v does not match the file", f)
				}
			}
			var files int
			for _, v := range c.want {
				if v != "/" && v[:min(2, len(v))] != "->" {
					files++
				}
			}
			if len(m.Files) != files {
				t.Errorf("manifest lists %d files, want %d", len(m.Files), files)
			}
		})
	}
	onlyPublished(t, e.host, "id-0", "id-1", "id-2", "id-3", "id-4", "id-5", "id-6")
}

func TestIdempotent(t *testing.T) {
	e := newEnv(t)
	crc := e.put(t, "x/ref.tar.gz", gz(t, tarOf(t, entry{name: "a", typ: tar.TypeReg, body: []byte("a")})))
	cfg := refdata.Config{ID: "again", S3Path: bucket + "/x/ref.tar.gz", CRC64NVME: crc, Unpack: true, HostPath: e.host}
	if _, err := refdata.Stage(t.Context(), cfg, e.tc); err != nil {
		t.Fatal(err)
	}
	res, err := refdata.Stage(t.Context(), cfg, e.tc)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Existing || e.tc.n.Load() != 1 {
		t.Fatalf("second stage: existing %t, downloads %d", res.Existing, e.tc.n.Load())
	}
	onlyPublished(t, e.host, "again")

	t.Run("changed file", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(res.Dir, "a"), []byte("tampered"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := refdata.Stage(t.Context(), cfg, e.tc)
		if !errors.Is(err, refdata.ErrPublished) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("other request", func(t *testing.T) {
		other := cfg
		other.Unpack = false
		if _, err := refdata.Stage(t.Context(), other, e.tc); !errors.Is(err, refdata.ErrPublished) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("no manifest", func(t *testing.T) {
		if err := os.Mkdir(filepath.Join(e.host, "bare"), 0o755); err != nil {
			t.Fatal(err)
		}
		bare := cfg
		bare.ID = "bare"
		if _, err := refdata.Stage(t.Context(), bare, e.tc); !errors.Is(err, refdata.ErrPublished) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestCorruptedDownload(t *testing.T) {
	e := newEnv(t)
	good := gz(t, tarOf(t, entry{name: "a", typ: tar.TypeReg, body: []byte("good data")}))
	crc := checksum.Encode(checksum.Sum(good))
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 0xff
	e.put(t, "c/ref.tar.gz", bad) // the object changed after registration
	_, err := refdata.Stage(t.Context(), refdata.Config{ID: "corrupt", S3Path: bucket + "/c/ref.tar.gz", CRC64NVME: crc,
		Unpack: true, HostPath: e.host}, e.tc)
	if !errors.Is(err, checksum.ErrMismatch) {
		t.Fatalf("err = %v, want a checksum mismatch", err)
	}
	onlyPublished(t, e.host)
}

func TestMaliciousArchives(t *testing.T) {
	e := newEnv(t)
	outside := t.TempDir()
	big := bytes.Repeat([]byte{0}, 2<<20)
	for _, c := range []struct {
		name string
		es   []entry
		want error
	}{
		{"dot dot", []entry{{name: "../evil", typ: tar.TypeReg, body: []byte("x")}}, refdata.ErrUnsafe},
		{"nested dot dot", []entry{{name: "a/../../evil", typ: tar.TypeReg, body: []byte("x")}}, refdata.ErrUnsafe},
		{"absolute", []entry{{name: "/tmp/evil", typ: tar.TypeReg, body: []byte("x")}}, refdata.ErrUnsafe},
		{"symlink out then write through it", []entry{
			{name: "out", typ: tar.TypeSymlink, link: "../../../../../../.." + outside},
			{name: "out/pwned", typ: tar.TypeReg, body: []byte("x")}}, refdata.ErrUnsafe},
		{"absolute symlink", []entry{{name: "etc", typ: tar.TypeSymlink, link: "/etc"}}, refdata.ErrUnsafe},
		{"symlink chain out", []entry{
			{name: "x/", typ: tar.TypeDir},
			{name: "x/y", typ: tar.TypeSymlink, link: ".."},
			{name: "a", typ: tar.TypeSymlink, link: "x/y/.."}}, refdata.ErrUnsafe},
		{"later link redirects an earlier one", []entry{
			{name: "a", typ: tar.TypeSymlink, link: "x/y/../.."},
			{name: "x/", typ: tar.TypeDir},
			{name: "x/y", typ: tar.TypeSymlink, link: ".."}}, refdata.ErrUnsafe},
		{"hard link to /etc/passwd", []entry{{name: "passwd", typ: tar.TypeLink, link: "/etc/passwd"}}, refdata.ErrUnsafe},
		{"hard link up", []entry{{name: "passwd", typ: tar.TypeLink, link: "../../../etc/passwd"}}, refdata.ErrUnsafe},
		{"hard link to a later entry", []entry{{name: "l", typ: tar.TypeLink, link: "f"},
			{name: "f", typ: tar.TypeReg, body: []byte("x")}}, refdata.ErrUnsafe},
		{"device", []entry{{name: "null", typ: tar.TypeChar}}, refdata.ErrUnsafe},
		{"fifo", []entry{{name: "fifo", typ: tar.TypeFifo}}, refdata.ErrUnsafe},
		{"duplicate", []entry{{name: "f", typ: tar.TypeReg, body: []byte("1")},
			{name: "f", typ: tar.TypeReg, body: []byte("2")}}, refdata.ErrUnsafe},
		{"file over a symlink", []entry{{name: "f", typ: tar.TypeReg, body: []byte("1")},
			{name: "s", typ: tar.TypeSymlink, link: "f"}, {name: "s", typ: tar.TypeReg, body: []byte("2")}}, refdata.ErrUnsafe},
		{"manifest name", []entry{{name: refdata.ManifestName, typ: tar.TypeReg, body: []byte("{}")}}, refdata.ErrUnsafe},
		{"too many bytes", []entry{{name: "zeros", typ: tar.TypeReg, body: big}}, refdata.ErrTooLarge},
		{"too many files", []entry{{name: "1", typ: tar.TypeReg}, {name: "2", typ: tar.TypeReg},
			{name: "3", typ: tar.TypeReg}, {name: "4", typ: tar.TypeReg}, {name: "5", typ: tar.TypeReg}}, refdata.ErrTooLarge},
	} {
		t.Run(c.name, func(t *testing.T) {
			key := "m/" + c.name + ".tar.gz"
			crc := e.put(t, key, gz(t, tarOf(t, c.es...)))
			_, err := refdata.Stage(t.Context(), refdata.Config{ID: "evil", S3Path: bucket + "/" + key, CRC64NVME: crc,
				Unpack: true, HostPath: e.host, MaxBytes: 1 << 20, MaxFiles: 4}, e.tc)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			onlyPublished(t, e.host)
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Fatalf("something was written outside: %v", ents)
			}
		})
	}
	t.Run("single file over the bound", func(t *testing.T) {
		crc := e.put(t, "m/zeros.gz", gz(t, big))
		_, err := refdata.Stage(t.Context(), refdata.Config{ID: "evil", S3Path: bucket + "/m/zeros.gz", CRC64NVME: crc,
			Unpack: true, HostPath: e.host, MaxBytes: 1 << 20}, e.tc)
		if !errors.Is(err, refdata.ErrTooLarge) {
			t.Fatalf("err = %v", err)
		}
		onlyPublished(t, e.host)
	})
}

func TestInvalidRequests(t *testing.T) {
	host := t.TempDir()
	for name, cfg := range map[string]refdata.Config{
		"bad id":            {ID: "../x", S3Path: "b/k.gz", CRC64NVME: "AAAAAAAAAAA=", HostPath: host},
		"bad crc":           {ID: "x", S3Path: "b/k.gz", CRC64NVME: "nope", HostPath: host},
		"unknown extension": {ID: "x", S3Path: "b/k.zip", CRC64NVME: "AAAAAAAAAAA=", Unpack: true, HostPath: host},
		"empty single name": {ID: "x", S3Path: "b/.gz", CRC64NVME: "AAAAAAAAAAA=", Unpack: true, HostPath: host},
		"missing host path": {ID: "x", S3Path: "b/k.gz", CRC64NVME: "AAAAAAAAAAA=", HostPath: filepath.Join(host, "no")},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := refdata.Stage(t.Context(), cfg, nil); err == nil {
				t.Fatal("Stage succeeded")
			}
		})
	}
}

// rawHeader is a hand-made ustar header (tar.Writer refuses a size without its data).
func rawHeader(name string, size int64) []byte {
	b := make([]byte, 512)
	copy(b[0:], name)
	copy(b[100:], fmt.Sprintf("%07o\x00", 0o644))
	copy(b[108:], "0000000\x000000000\x00")
	b[124] = 0x80 // GNU base-256: sizes from 8 GiB up do not fit the octal field
	for i := 135; i > 124; i-- {
		b[i] = byte(size)
		size >>= 8
	}
	copy(b[136:], fmt.Sprintf("%011o\x00", 0))
	b[156] = tar.TypeReg
	copy(b[257:], "ustar\x0000")
	copy(b[148:], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// TestUnpackBounds: attacks on the bounds of the refdata unpack (from a security review).
func TestUnpackBounds(t *testing.T) {
	e := newEnv(t)
	stage := func(t *testing.T, id string, archive []byte, maxFiles int) error {
		t.Helper()
		key := "b/" + id + ".tar.gz"
		crc := e.put(t, key, gz(t, archive))
		_, err := refdata.Stage(t.Context(), refdata.Config{ID: id, S3Path: bucket + "/" + key, CRC64NVME: crc,
			Unpack: true, HostPath: e.host, MaxFiles: maxFiles}, e.tc)
		onlyPublished(t, e.host)
		return err
	}
	t.Run("one deep directory entry counts every directory", func(t *testing.T) {
		// One entry "d/d/…/d/", 2,000 levels: it used to count as one entry and pass MaxFiles=5.
		err := stage(t, "deep", tarOf(t, entry{name: strings.Repeat("d/", 2000), typ: tar.TypeDir}), 5)
		if !errors.Is(err, refdata.ErrTooLarge) || !strings.Contains(err.Error(), "REFDATA_MAX_FILES=5") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a name longer than PATH_MAX", func(t *testing.T) {
		// The review's archive: "d/" × 20,000 (took 34 s and left a tree os.RemoveAll could not delete).
		err := stage(t, "deeper", tarOf(t, entry{name: strings.Repeat("d/", 20000), typ: tar.TypeDir}), 5)
		if !errors.Is(err, refdata.ErrUnsafe) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("the default byte bound is realistic", func(t *testing.T) {
		// A header announcing 300 GiB (the data need not follow: it is refused before any
		// byte is written), under the default bounds.
		archive := append(rawHeader("huge", 300<<30), make([]byte, 1024)...)
		err := stage(t, "huge", archive, 0)
		if !errors.Is(err, refdata.ErrTooLarge) || !strings.Contains(err.Error(), "REFDATA_MAX_BYTES=274877906944 (256 GiB)") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestCleanupDeepTree: a failed staging removes its tree however deep. os.RemoveAll holds a
// descriptor per level, so past the descriptor limit it failed and the tree stayed on the
// shared file system; the limit is lowered here to show it with a 2,000-level tree.
func TestCleanupDeepTree(t *testing.T) {
	e := newEnv(t)
	archive := tarOf(t, entry{name: strings.Repeat("d/", 2000) + "f", typ: tar.TypeReg, body: []byte("x")},
		entry{name: "fifo", typ: tar.TypeFifo})
	crc := e.put(t, "deep.tar.gz", gz(t, archive))
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = 256
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skipf("cannot lower the descriptor limit: %v", err)
	}
	_, err := refdata.Stage(t.Context(), refdata.Config{ID: "deep", S3Path: bucket + "/deep.tar.gz", CRC64NVME: crc,
		Unpack: true, HostPath: e.host}, e.tc)
	if rerr := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); rerr != nil {
		t.Fatal(rerr)
	}
	if !errors.Is(err, refdata.ErrUnsafe) {
		t.Fatalf("err = %v", err)
	}
	onlyPublished(t, e.host)
}

// smallFS mounts a tmpfs of size bytes: a real file system that fills up. It needs root
// (CAP_SYS_ADMIN); elsewhere the test is skipped, saying so.
func smallFS(t *testing.T, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("cannot mount a %d-byte tmpfs to fill up (needs root): %v", size, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// TestFullDisk: the refdata file system fills up while downloading or unpacking: a clear error,
// nothing published, nothing left behind.
func TestFullDisk(t *testing.T) {
	e := newEnv(t)
	zeros := bytes.Repeat([]byte{0}, 6<<20)
	random := make([]byte, 3<<20)
	for i := range random {
		random[i] = byte(i*7919 + i>>8*31 + i>>16)
	}
	for _, c := range []struct {
		name, key string
		data      []byte
		unpack    bool
	}{
		{"unpacking", "full/zeros.tar.gz", gz(t, tarOf(t, entry{name: "small", typ: tar.TypeReg, body: []byte("x")},
			entry{name: "db/zeros", typ: tar.TypeReg, body: zeros})), true},
		{"downloading", "full/random.bin", random, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			host := smallFS(t, 2<<20)
			crc := e.put(t, c.key, c.data)
			_, err := refdata.Stage(t.Context(), refdata.Config{ID: "full", S3Path: bucket + "/" + c.key, CRC64NVME: crc,
				Unpack: c.unpack, HostPath: host}, e.tc)
			if !errors.Is(err, refdata.ErrNoSpace) {
				t.Fatalf("err = %v, want ErrNoSpace", err)
			}
			for _, want := range []string{"no space left", "nothing was published", host, "free now"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the error does not say %q: %v", want, err)
				}
			}
			t.Logf("the admin reads: %v", err)
			onlyPublished(t, host)
		})
	}
}
