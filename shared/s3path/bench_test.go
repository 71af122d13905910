package s3path

import (
	"strings"
	"testing"
)

// BenchmarkParse measures validation of a typical path and of a 1024-byte non-ASCII key
// (the API validates every input path of a job, up to thousands).
func BenchmarkParse(b *testing.B) {
	paths := map[string]string{
		"typical":      "test-bucket/collections_image_test/NONE/CDM/FastGenomics/GCA_000008085.1/GCA_000008085.1_ASM808v1_genomic.fna.gz",
		"1KiB-unicode": "test-bucket/" + strings.Repeat("日本/", 146), // 1022-byte key
	}
	for name, s := range paths {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(s)))
			for b.Loop() {
				if _, err := Parse(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
