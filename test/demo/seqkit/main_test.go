package main

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStats(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "a.fna")
	if err := os.WriteFile(plain, []byte(">s1 first\nACGT\nAC\n>s2\nGGGGGGGG\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	_, _ = w.Write([]byte(">only\nACGTACGTAC\n"))
	_ = w.Close()
	zipped := filepath.Join(dir, "b.fna.gz")
	if err := os.WriteFile(zipped, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "stats.txt")
	if err := run([]string{"stats", "--tabular", "-o", out, plain, zipped}, os.Stdout); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "file\tformat\ttype\tnum_seqs\tsum_len\tmin_len\tavg_len\tmax_len\n" +
		plain + "\tFASTA\tDNA\t2\t14\t6\t7.0\t8\n" +
		zipped + "\tFASTA\tDNA\t1\t10\t10\t10.0\t10\n"
	if string(b) != want {
		t.Fatalf("got\n%s\nwant\n%s", b, want)
	}
	if err := run([]string{"seq", plain}, os.Stdout); err == nil || !strings.Contains(err.Error(), "only `seqkit stats`") {
		t.Fatalf("seq: %v", err)
	}
}
