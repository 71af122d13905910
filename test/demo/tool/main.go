// Command cts-demo-tool is the entrypoint of the demo image: a small static program that
// summarises text files, the way a real CTS image summarises genomes.
//
//	cts-demo-tool --container N FILE...
//
// For every input FILE (gzipped when its name ends in .gz) it writes <basename>.stats.json (lines, words, bytes, GC fraction of
// the sequence lines, SHA-256) to /output_files, and container-N.summary.txt listing them.
// It prints progress to stdout and a line to stderr, so both logs have content.
package main

import (
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

type stats struct {
	File       string  `json:"file"`
	Lines      int     `json:"lines"`
	Words      int     `json:"words"`
	Bytes      int64   `json:"bytes"`
	GCFraction float64 `json:"gc_fraction"`
	SHA256     string  `json:"sha256"`
}

func main() {
	out := flag.String("out", "/output_files", "output directory")
	container := flag.Int("container", 0, "container number")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "no input files")
		os.Exit(2)
	}
	var summary strings.Builder
	for _, f := range flag.Args() {
		st, err := summarise(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(1)
		}
		b, _ := json.MarshalIndent(st, "", "  ")
		name := filepath.Base(f) + ".stats.json"
		if err := os.WriteFile(filepath.Join(*out, name), append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(1)
		}
		fmt.Printf("container %d: %s: %d lines, %d bytes, GC %.3f\n", *container, f, st.Lines, st.Bytes, st.GCFraction)
		fmt.Fprintf(&summary, "%s\t%s\n", name, st.SHA256)
	}
	if err := os.WriteFile(filepath.Join(*out, fmt.Sprintf("container-%d.summary.txt", *container)), []byte(summary.String()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "container %d done: %d files\n", *container, flag.NArg())
}

func summarise(path string) (stats, error) {
	f, err := os.Open(path)
	if err != nil {
		return stats{}, err
	}
	defer f.Close()
	h := sha256.New()
	st := stats{File: path}
	var gc, bases int
	var src io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		gr, err := gzip.NewReader(f)
		if err != nil {
			return stats{}, fmt.Errorf("%s: %w", path, err)
		}
		defer gr.Close()
		src = gr
	}
	r := bufio.NewReader(io.TeeReader(src, h))
	for {
		line, err := r.ReadString('\n')
		if len(line) > 0 {
			st.Lines++
			st.Bytes += int64(len(line))
			st.Words += len(strings.Fields(line))
			if !strings.HasPrefix(line, ">") {
				for _, c := range strings.ToUpper(line) {
					switch c {
					case 'G', 'C':
						gc++
						bases++
					case 'A', 'T':
						bases++
					}
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return stats{}, err
		}
	}
	if bases > 0 {
		st.GCFraction = float64(gc) / float64(bases)
	}
	st.SHA256 = hex.EncodeToString(h.Sum(nil))
	return st, nil
}
