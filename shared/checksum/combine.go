package checksum

// Combining CRCs, after zlib's crc32_combine (1.2.12 and later): the CRC of A||B is the CRC
// of A advanced over len(B) zero bytes, XORed with the CRC of B. Because CRC-64/NVME starts
// from and ends with an XOR of all ones, the pre/post inversions cancel exactly as they do for
// zlib's CRC-32, so the formula needs no correction terms. Advancing over n zero bytes is a
// multiplication by x^(8n) modulo the polynomial in GF(2)[x]; instead of zlib's older
// 64x64 GF(2) operator matrices (squared once per bit of n), we keep the powers x^(2^k) mod P
// in a table and multiply polynomials directly: the same algebra, a fraction of the work.
//
// Polynomials are in the CRC's reflected form: bit 63 holds the coefficient of x^0 and bit 0
// that of x^63.

// x2nTable[k] is x^(2^k) mod P. Combine needs exponents up to 8·(2^63−1) < 2^66.
var x2nTable = func() [67]uint64 {
	var t [67]uint64
	t[0] = 1 << 62 // x^1
	for k := 1; k < len(t); k++ {
		t[k] = multModP(t[k-1], t[k-1])
	}
	return t
}()

// multModP returns a(x)·b(x) mod P (reflected representation).
func multModP(a, b uint64) uint64 {
	var p uint64
	for m := uint64(1) << 63; m != 0 && a != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
			a ^= m
		}
		// b = b·x mod P
		if b&1 != 0 {
			b = b>>1 ^ Poly
		} else {
			b >>= 1
		}
	}
	return p
}

// xPow8nModP returns x^(8n) mod P.
func xPow8nModP(n uint64) uint64 {
	p := uint64(1) << 63 // x^0
	for k := 3; n != 0; k, n = k+1, n>>1 {
		if n&1 != 0 {
			p = multModP(x2nTable[k], p)
		}
	}
	return p
}

// Combine returns the CRC64/NVME of A||B given crc1 = CRC64/NVME(A), crc2 = CRC64/NVME(B)
// and len2 = len(B). It lets parts of an object be checksummed independently (e.g. uploaded
// in parallel) and still yield the whole-object CRC. A negative len2 is a programming error
// and panics. Cost: at most ~60 polynomial multiplications, independent of the data size.
func Combine(crc1, crc2 uint64, len2 int64) uint64 {
	if len2 < 0 {
		panic("checksum.Combine: negative length")
	}
	if len2 == 0 {
		return crc1 ^ crc2 // crc2 is the CRC of nothing: 0 unless the caller lied
	}
	return multModP(xPow8nModP(uint64(len2)), crc1) ^ crc2
}
