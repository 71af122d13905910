// Command tool is the entrypoint of the fault tests' image: it runs for a while, then copies
// its inputs to its outputs, so a job that survived a fault still has outputs to check.
//
//	tool sleep-copy SECONDS         sleep, then copy /input_files/* to /output_files
//	tool wait-copy NAME             wait until /input_files/NAME exists (the test creates it in
//	                                the agent's input folder, which the container sees live),
//	                                then copy the other inputs to /output_files
//	tool sleep SECONDS              sleep; on SIGTERM print "got SIGTERM" and exit 143
//	tool sleep-ignore-term SECONDS  sleep and ignore SIGTERM
package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: tool sleep-copy|sleep|sleep-ignore-term SECONDS | wait-copy NAME")
		os.Exit(2)
	}
	if os.Args[1] == "wait-copy" {
		fmt.Println("started")
		gate := filepath.Join("/input_files", os.Args[2])
		for {
			if _, err := os.Stat(gate); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		copyInputs(gate)
		return
	}
	secs, err := strconv.ParseFloat(os.Args[2], 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	sigs := make(chan os.Signal, 1)
	switch os.Args[1] {
	case "sleep-ignore-term":
		signal.Ignore(syscall.SIGTERM)
	default:
		signal.Notify(sigs, syscall.SIGTERM)
	}
	fmt.Println("started")
	select {
	case <-time.After(time.Duration(secs * float64(time.Second))):
	case <-sigs:
		fmt.Println("got SIGTERM")
		os.Exit(143)
	}
	if os.Args[1] != "sleep-copy" {
		return
	}
	copyInputs("")
}

// copyInputs copies every file under /input_files but skip to /output_files.
func copyInputs(skip string) {
	err := filepath.Walk("/input_files", func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || p == skip {
			return err
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(filepath.Join("/output_files", filepath.Base(p)))
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			return err
		}
		fmt.Println("copied", p)
		return out.Close()
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
