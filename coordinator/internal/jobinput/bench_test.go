package jobinput

import (
	"bytes"
	"fmt"
	"testing"
)

// BenchmarkDecode decodes a body with the maximum 10,000 input files, 1,000 containers and
// input roots (every file is placed and checked for collisions).
func BenchmarkDecode(b *testing.B) {
	body := validBody()
	in := make([]any, 10000)
	for i := range in {
		in[i] = fmt.Sprintf("bucket/collections/GCA_%09d.1/GCA_%09d.1_genomic.fna.gz", i, i)
	}
	body["input_files"] = in
	body["input_roots"] = []any{"bucket/collections"}
	body["num_containers"] = 1000
	data := mustJSON(b, body)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(bytes.NewReader(data), DefaultOptions()); err != nil {
			b.Fatal(err)
		}
	}
}
