// Command testtool is the tiny static program the container tests and the demo use as an image
// entrypoint. Each sub-command exercises one thing a container runtime must get right
// (arguments, streams, exit codes, signals, memory limits, mounts, privileges, network).
// It must stay one small file with only the standard library, so it builds static with
// CGO_ENABLED=0 and runs in an image that holds nothing else.
package main

import (
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const usage = `usage: testtool COMMAND [ARGS...]
  echo ARGS...            print each argument on its own line (stdout)
  stderr MSG              print MSG to stderr
  exit N                  exit with status N
  sleep SECONDS           sleep; on SIGTERM print "got SIGTERM" and exit 143
  sleep-ignore-term SECS  sleep and ignore SIGTERM
  alloc MiB               allocate and touch MiB mebibytes, then exit 0
  copy                    copy every file under /input_files to /output_files
  copy-tree SRC DST       copy every file under SRC to DST
  caps                    print the CapEff and NoNewPrivs lines of /proc/self/status
  write PATH              try to write PATH; print "ok" or "error: ..."
  ls DIR                  print the names in DIR, one per line
  env                     print the environment, one variable per line
  ifaces                  print the network interface names, one per line
  id                      print "uid=U gid=G"`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "testtool:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("no command\n%s", usage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "echo":
		for _, a := range rest {
			fmt.Println(a)
		}
	case "stderr":
		fmt.Fprintln(os.Stderr, strings.Join(rest, " "))
	case "exit":
		n, err := intArg(rest)
		if err != nil {
			return err
		}
		os.Exit(n)
	case "sleep", "sleep-ignore-term":
		n, err := intArg(rest)
		if err != nil {
			return err
		}
		return sleep(time.Duration(n)*time.Second, cmd == "sleep-ignore-term")
	case "alloc":
		n, err := intArg(rest)
		if err != nil {
			return err
		}
		return alloc(n)
	case "copy":
		return copyTree("/input_files", "/output_files")
	case "copy-tree":
		if len(rest) != 2 {
			return fmt.Errorf("copy-tree needs SRC and DST")
		}
		return copyTree(rest[0], rest[1])
	case "caps":
		return caps()
	case "write":
		if len(rest) != 1 {
			return fmt.Errorf("write needs a PATH")
		}
		if err := os.WriteFile(rest[0], []byte("written\n"), 0o644); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("ok")
	case "ls":
		if len(rest) != 1 {
			return fmt.Errorf("ls needs a DIR")
		}
		entries, err := os.ReadDir(rest[0])
		if err != nil {
			return err
		}
		for _, e := range entries {
			fmt.Println(e.Name())
		}
	case "env":
		for _, e := range os.Environ() {
			fmt.Println(e)
		}
	case "ifaces":
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		names := make([]string, 0, len(ifs))
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		sort.Strings(names)
		fmt.Println(strings.Join(names, "\n"))
	case "id":
		fmt.Printf("uid=%d gid=%d\n", os.Getuid(), os.Getgid())
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
	return nil
}

func intArg(rest []string) (int, error) {
	if len(rest) != 1 {
		return 0, fmt.Errorf("need exactly one integer argument")
	}
	return strconv.Atoi(rest[0])
}

// sleep prints "sleeping" first so a test reading stdout knows the handler is installed.
func sleep(d time.Duration, ignoreTerm bool) error {
	term := make(chan os.Signal, 1)
	if ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(term, syscall.SIGTERM)
	}
	fmt.Println("sleeping")
	select {
	case <-term:
		fmt.Println("got SIGTERM")
		os.Exit(143)
	case <-time.After(d):
	}
	return nil
}

// alloc keeps every chunk reachable and writes one byte per page so the memory is really
// charged to the cgroup.
func alloc(mib int) error {
	const chunk = 1 << 20
	keep := make([][]byte, 0, mib)
	for i := 0; i < mib; i++ {
		b := make([]byte, chunk)
		for j := 0; j < chunk; j += 4096 {
			b[j] = 1
		}
		keep = append(keep, b)
	}
	fmt.Println("allocated", len(keep), "MiB")
	return nil
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

func caps() error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "CapEff:") || strings.HasPrefix(line, "NoNewPrivs:") {
			fmt.Println(line)
		}
	}
	return nil
}
