package checksum

import (
	"bytes"
	"errors"
	"hash/crc64"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// readChunks reads r to the end with Read calls of the given sizes (cycled), like a caller
// with an odd buffer, and returns the bytes and the terminating error (nil for io.EOF).
func readChunks(r io.Reader, sizes []int) ([]byte, error) {
	var out []byte
	for i := 0; ; i++ {
		buf := make([]byte, sizes[i%len(sizes)])
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

func TestVerifyingReader(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(9, 10))
	data := randBytes(rng, 600_001)
	good := Encode(crc64.Checksum(data, stdTable))
	tests := []struct {
		name     string
		src      func() io.Reader
		want     string
		chunks   []int
		wantN    int64
		mismatch bool
		wantErr  error
	}{
		{name: "match", src: func() io.Reader { return bytes.NewReader(data) }, want: good,
			chunks: []int{32 << 10}, wantN: int64(len(data))},
		{name: "match odd chunks", src: func() io.Reader { return bytes.NewReader(data) }, want: good,
			chunks: []int{1, 3, 7, 127, 129, 4093, 65537}, wantN: int64(len(data))},
		{name: "match half reader", src: func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
			want: good, chunks: []int{10007}, wantN: int64(len(data))},
		{name: "match data with EOF", src: func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) },
			want: good, chunks: []int{99991}, wantN: int64(len(data))},
		{name: "empty matches zero", src: func() io.Reader { return bytes.NewReader(nil) },
			want: "AAAAAAAAAAA=", chunks: []int{16}, wantN: 0},
		{name: "flipped byte", src: func() io.Reader {
			d := bytes.Clone(data)
			d[len(d)/2] ^= 1
			return bytes.NewReader(d)
		}, want: good, chunks: []int{5000}, wantN: int64(len(data)), mismatch: true},
		{name: "short stream", src: func() io.Reader { return bytes.NewReader(data[:len(data)-1]) },
			want: good, chunks: []int{4096}, wantN: int64(len(data) - 1), mismatch: true},
		{name: "extra byte", src: func() io.Reader { return bytes.NewReader(append(bytes.Clone(data), 0)) },
			want: good, chunks: []int{4096}, wantN: int64(len(data) + 1), mismatch: true},
		{name: "malformed want never matches", src: func() io.Reader { return bytes.NewReader(data) },
			want: "not-a-crc", chunks: []int{4096}, wantN: int64(len(data)), mismatch: true},
		{name: "unexpected EOF passes through", src: func() io.Reader {
			return io.MultiReader(bytes.NewReader(data[:1000]), iotest.ErrReader(io.ErrUnexpectedEOF))
		}, want: good, chunks: []int{300}, wantN: 1000, wantErr: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := NewVerifyingReader(tt.src(), "bucket/key", tt.want)
			got, err := readChunks(v, tt.chunks)
			checkVerifyResult(t, v, got, err, tt.wantN, tt.want, tt.mismatch, tt.wantErr)
			if err != nil {
				// The end result is sticky.
				if n, again := v.Read(make([]byte, 10)); n != 0 || again != err {
					t.Errorf("Read after end = %d, %v; want 0, %v", n, again, err)
				}
			}
		})
		t.Run(tt.name+"/WriteTo", func(t *testing.T) {
			t.Parallel()
			v := NewVerifyingReader(tt.src(), "bucket/key", tt.want)
			var dst bytes.Buffer
			n, err := io.Copy(&dst, v) // uses WriteTo
			if n != int64(dst.Len()) {
				t.Errorf("io.Copy returned %d, wrote %d", n, dst.Len())
			}
			checkVerifyResult(t, v, dst.Bytes(), err, tt.wantN, tt.want, tt.mismatch, tt.wantErr)
		})
	}
}

func checkVerifyResult(t *testing.T, v *VerifyingReader, got []byte, err error, wantN int64,
	want string, mismatch bool, wantErr error) {
	t.Helper()
	if v.N() != wantN || int64(len(got)) != wantN {
		t.Errorf("N() = %d, bytes passed = %d, want %d", v.N(), len(got), wantN)
	}
	if sum := Encode(crc64.Checksum(got, stdTable)); v.Sum() != sum {
		t.Errorf("Sum() = %s, CRC of the bytes passed = %s", v.Sum(), sum)
	}
	switch {
	case mismatch:
		var me *MismatchError
		if !errors.As(err, &me) || !errors.Is(err, ErrMismatch) {
			t.Fatalf("error = %v, want *MismatchError", err)
		}
		if me.Path != "bucket/key" || me.Want != want || me.Got != v.Sum() {
			t.Errorf("MismatchError = %+v, want path bucket/key, want %s, got %s", me, want, v.Sum())
		}
	case wantErr != nil:
		if !errors.Is(err, wantErr) || errors.Is(err, ErrMismatch) {
			t.Fatalf("error = %v, want %v", err, wantErr)
		}
	default:
		if err != nil {
			t.Fatalf("error = %v, want nil", err)
		}
	}
}

// TestVerifyingReaderWriteError checks that a failing destination stops the copy with its
// error and is not mistaken for a checksum problem.
func TestVerifyingReaderWriteError(t *testing.T) {
	t.Parallel()
	data := randBytes(rand.New(rand.NewPCG(11, 12)), 1<<20)
	v := NewVerifyingReader(bytes.NewReader(data), "p", Encode(Sum(data)))
	boom := errors.New("disk full")
	_, err := io.Copy(failingWriter{after: 1000, err: boom}, v)
	if !errors.Is(err, boom) || errors.Is(err, ErrMismatch) {
		t.Fatalf("io.Copy error = %v, want %v", err, boom)
	}
}

type failingWriter struct {
	after int
	err   error
}

func (w failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.after {
		return w.after, w.err
	}
	return len(p), nil
}
