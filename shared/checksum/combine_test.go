package checksum

import (
	"hash/crc64"
	"math/rand/v2"
	"testing"
)

func TestCombineSplits(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(13, 14))
	data := randBytes(rng, 300_000)
	tests := []struct {
		name  string
		split func(n int) int
	}{
		{"empty first", func(int) int { return 0 }},
		{"empty second", func(n int) int { return n }},
		{"one byte first", func(int) int { return 1 }},
		{"one byte second", func(n int) int { return n - 1 }},
		{"middle", func(n int) int { return n / 2 }},
		{"random", func(n int) int { return rng.IntN(n + 1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 50 {
				n := rng.IntN(len(data) + 1)
				whole := data[:n]
				k := tt.split(n)
				a, b := whole[:k], whole[k:]
				want := crc64.Checksum(whole, stdTable)
				if got := Combine(Sum(a), Sum(b), int64(len(b))); got != want {
					t.Fatalf("n=%d split=%d: Combine = %#x, direct = %#x", n, k, got, want)
				}
			}
		})
	}
}

// TestCombineParts folds many parts, some empty, the way a parallel multipart upload does.
func TestCombineParts(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(15, 16))
	for round := range 20 {
		var whole []byte
		var crc uint64
		parts := 1 + rng.IntN(40)
		for range parts {
			size := rng.IntN(20_000)
			if rng.IntN(5) == 0 {
				size = 0
			}
			part := randBytes(rng, size)
			whole = append(whole, part...)
			crc = Combine(crc, Sum(part), int64(len(part)))
		}
		if want := crc64.Checksum(whole, stdTable); crc != want {
			t.Fatalf("round %d (%d parts, %d bytes): combined = %#x, direct = %#x", round, parts, len(whole), crc, want)
		}
	}
}

// TestCombineLargeLength checks lengths beyond what the tests can materialise: advancing over
// m+n zero bytes equals advancing over m then n, and Combine with zero data is consistent with
// Update over real zero bytes for a moderate size.
func TestCombineLargeLength(t *testing.T) {
	t.Parallel()
	zeros := make([]byte, 1<<20)
	crcA := Sum([]byte("prefix"))
	if got, want := Combine(crcA, Sum(zeros), int64(len(zeros))), Update(crcA, zeros); got != want {
		t.Fatalf("1 MiB of zeros: Combine = %#x, Update = %#x", got, want)
	}
	rng := rand.New(rand.NewPCG(17, 18))
	for range 50 {
		m := rng.Uint64N(1 << 62)
		n := rng.Uint64N(1 << 62)
		whole := xPow8nModP(m + n)
		stepwise := multModP(xPow8nModP(m), xPow8nModP(n))
		if whole != stepwise {
			t.Fatalf("x^(8(m+n)) != x^(8m)·x^(8n) for m=%d n=%d", m, n)
		}
	}
	// The largest length must not index past the power table.
	_ = Combine(crcA, crcA, 1<<63-1)
}

func TestCombineNegativeLengthPanics(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Fatal("Combine with a negative length did not panic")
		}
	}()
	Combine(1, 2, -1)
}
