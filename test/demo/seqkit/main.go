// Command cts-demo-seqkit is the program of the dev site's cts/seqkit image: a small stand-in
// for SeqKit (https://bioinf.shenwei.me/seqkit/) that implements `seqkit stats`, with the
// real tool's arguments and columns, so the SeqKit example of the documentation runs on a dev
// site as it is written. It reads FASTA files, gzipped or not.
//
//	seqkit stats [-T|--tabular] [-a|--all] [-o FILE] FILE...
//
// Columns: file format type num_seqs sum_len min_len avg_len max_len. The output is a table
// aligned with spaces, or tab-separated with --tabular; "-" is standard output.
package main

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "[ERRO]", err)
		os.Exit(1)
	}
}

type stats struct {
	file                     string
	seqs, sum, minLen, maxLn int64
}

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stdout, "usage: seqkit stats [-T|--tabular] [-o FILE] FILE...   (a stand-in for SeqKit's stats)")
		return nil
	}
	if args[0] == "version" {
		fmt.Fprintln(stdout, "seqkit v2.8.2 (cts stand-in: stats only)")
		return nil
	}
	if args[0] != "stats" {
		return fmt.Errorf("this stand-in for SeqKit implements only `seqkit stats`, not %q", args[0])
	}
	tabular, out := false, "-"
	var files []string
	for i := 1; i < len(args); i++ {
		switch a := args[i]; a {
		case "-T", "--tabular":
			tabular = true
		case "-a", "--all", "-b", "--basename":
		case "-o", "--out-file":
			if i+1 == len(args) {
				return errors.New("flag needs an argument: " + a)
			}
			i++
			out = args[i]
		default:
			if strings.HasPrefix(a, "-") && a != "-" {
				return fmt.Errorf("unknown flag: %s", a)
			}
			files = append(files, a)
		}
	}
	if len(files) == 0 {
		return errors.New("no input files")
	}
	var all []stats
	for _, f := range files {
		st, err := fileStats(f)
		if err != nil {
			return err
		}
		all = append(all, st)
		fmt.Fprintf(os.Stderr, "[INFO] %s: %d sequences, %d bp\n", f, st.seqs, st.sum)
	}
	w := stdout
	if out != "-" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	return write(w, all, tabular)
}

func write(w io.Writer, all []stats, tabular bool) error {
	header := []string{"file", "format", "type", "num_seqs", "sum_len", "min_len", "avg_len", "max_len"}
	rows := [][]string{header}
	for _, s := range all {
		avg := 0.0
		if s.seqs > 0 {
			avg = float64(s.sum) / float64(s.seqs)
		}
		rows = append(rows, []string{s.file, "FASTA", "DNA", strconv.FormatInt(s.seqs, 10), strconv.FormatInt(s.sum, 10),
			strconv.FormatInt(s.minLen, 10), strconv.FormatFloat(avg, 'f', 1, 64), strconv.FormatInt(s.maxLn, 10)})
	}
	if tabular {
		for _, r := range rows {
			if _, err := fmt.Fprintln(w, strings.Join(r, "\t")); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// fileStats reads a FASTA file (gzipped when its name ends in .gz).
func fileStats(path string) (stats, error) {
	f, err := os.Open(path)
	if err != nil {
		return stats{}, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		gr, err := gzip.NewReader(f)
		if err != nil {
			return stats{}, fmt.Errorf("%s: %w", path, err)
		}
		defer gr.Close()
		r = gr
	}
	st := stats{file: path, minLen: -1}
	cur := int64(-1)
	end := func() {
		if cur < 0 {
			return
		}
		st.seqs++
		st.sum += cur
		if st.minLen < 0 || cur < st.minLen {
			st.minLen = cur
		}
		st.maxLn = max(st.maxLn, cur)
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) > 0 && line[0] == '>' {
			end()
			cur = 0
			continue
		}
		if cur >= 0 {
			cur += int64(len(strings.TrimSpace(string(line))))
		}
	}
	if err := sc.Err(); err != nil {
		return stats{}, fmt.Errorf("%s: %w", path, err)
	}
	end()
	if st.minLen < 0 {
		st.minLen = 0
	}
	return st, nil
}
