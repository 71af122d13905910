// Command uitool is the entrypoint of the image the dashboard's browser tests run: a job
// whose containers live long enough to be watched.
//
//	uitool lines N MS FILE...   print "line i of N" to stdout every MS milliseconds, then write
//	                            <basename>.lines.txt for each input FILE to /output_files
//	uitool fail CODE MESSAGE    print MESSAGE to stderr and exit with CODE
//	uitool sleep SECONDS        sleep (a job to cancel)
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "uitool:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: uitool lines N MS FILE... | fail CODE MESSAGE | sleep SECONDS")
	}
	switch args[0] {
	case "lines":
		if len(args) < 3 {
			return errors.New("lines needs N, MS and at least one FILE")
		}
		n, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		ms, err := strconv.Atoi(args[2])
		if err != nil {
			return err
		}
		for i := 1; i <= n; i++ {
			fmt.Printf("line %d of %d\n", i, n)
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		for _, f := range args[3:] {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			out := filepath.Join("/output_files", filepath.Base(f)+".lines.txt")
			if err := os.WriteFile(out, []byte(fmt.Sprintf("%s: %d bytes\n", f, len(b))), 0o644); err != nil {
				return err
			}
		}
		fmt.Fprintf(os.Stderr, "done: %d files\n", len(args)-3)
	case "fail":
		code, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		if len(args) > 2 {
			fmt.Fprintln(os.Stderr, args[2])
		}
		os.Exit(code)
	case "sleep":
		s, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		time.Sleep(time.Duration(s) * time.Second)
	default:
		return fmt.Errorf("unknown command %q", args[0])
	}
	return nil
}
