package checksum

import (
	"bytes"
	"hash/crc64"
	"io"
	"math/rand/v2"
	"testing"
)

// BenchmarkCRC64NVME compares the assembly (minio) with Go's hash/crc64, the code
// aws-sdk-go-v2 would run, on 1 MiB buffers. Run:
//
//	go test -run=^$ -bench=CRC64NVME -benchtime=2s ./shared/checksum/
func BenchmarkCRC64NVME(b *testing.B) {
	data := randBytes(rand.New(rand.NewPCG(1, 1)), 1<<20)
	var sink uint64
	b.Run("minio-1MiB", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			sink ^= Sum(data)
		}
	})
	b.Run("hashcrc64-1MiB", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			sink ^= crc64.Checksum(data, stdTable)
		}
	})
	if sink == 42 {
		b.Log(sink)
	}
}

// BenchmarkVerifyingReader64MiB streams 64 MiB through a VerifyingReader, both with a caller
// reading 32 KiB at a time and through io.Copy (which uses WriteTo and a 256 KiB buffer).
func BenchmarkVerifyingReader64MiB(b *testing.B) {
	data := randBytes(rand.New(rand.NewPCG(2, 2)), 64<<20)
	want := Encode(Sum(data))
	b.Run("Read-32KiB", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		buf := make([]byte, 32<<10)
		for b.Loop() {
			v := NewVerifyingReader(bytes.NewReader(data), "b/k", want)
			for {
				_, err := v.Read(buf)
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("WriteTo", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			v := NewVerifyingReader(bytes.NewReader(data), "b/k", want)
			if _, err := io.Copy(io.Discard, v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkOf measures the streaming Of over 64 MiB.
func BenchmarkOf(b *testing.B) {
	data := randBytes(rand.New(rand.NewPCG(3, 3)), 64<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, _, err := Of(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCombine measures combining two CRCs across a 5 GiB part (the S3 part maximum).
func BenchmarkCombine(b *testing.B) {
	var crc uint64 = 1
	for b.Loop() {
		crc = Combine(crc, 0xAE8B14860A799888, 5<<30)
	}
	if crc == 42 {
		b.Log(crc)
	}
}
