// Command testtool is the tiny static program the container tests and the demo use as an image
// entrypoint. Each sub-command exercises one thing a container runtime must get right
// (arguments, streams, exit codes, signals, memory limits, mounts, privileges, network).
// It must stay one small file with only the standard library, so it builds static with
// CGO_ENABLED=0 and runs in an image that holds nothing else.
package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
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
  id                      print "uid=U gid=G"
  probe                   (as a container's PID 1 only) print the container's confinement, one "name: value" line each: the
                          Seccomp, NoNewPrivs and capability lines of /proc/self/status, then
                          the errno of each forbidden operation (mount, unshare, ptrace of
                          PID 1 from a child, writing /proc/sys, reading /proc/timer_list and
                          /proc/keys, listing
                          /sys/firmware, executing a file in /tmp), "ok" when it succeeded
  fork N                  start up to N processes that wait; print "forked K of N" and the
                          first error, then exit 0 (the pids limit is what stops it)
  flood MB                write MB megabytes of lines to stdout as fast as possible
  limits                  print the container's own cgroup limits as the kernel enforces them
                          (cgroup v2 cpu.max, pids.max, memory.max or their v1 files):
                          "cpu: QUOTA PERIOD" (QUOTA "max" when unlimited), "pids: N",
                          "memory: BYTES" ("max" when unlimited)
  files N                 write N small files to /output_files/dNNN/fNNNNNNN.txt (1,000 a folder)
With TESTTOOL_TOUCH=PATH in its environment it creates PATH after a command that succeeded.`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "testtool:", err)
		os.Exit(1)
	}
	// TESTTOOL_TOUCH names a file to create once the command succeeded: a job whose command
	// writes no output of its own still completes.
	if p := os.Getenv("TESTTOOL_TOUCH"); p != "" {
		if err := os.WriteFile(p, []byte("done\n"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "testtool:", err)
			os.Exit(1)
		}
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
	case "files":
		n, err := strconv.Atoi(strings.Join(rest, ""))
		if err != nil || n < 0 {
			return fmt.Errorf("files needs a count")
		}
		for i := range n {
			dir := fmt.Sprintf("/output_files/d%03d", i/1000)
			if i%1000 == 0 {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return err
				}
			}
			if err := os.WriteFile(fmt.Sprintf("%s/f%07d.txt", dir, i), []byte(strconv.Itoa(i)+"\n"), 0o644); err != nil {
				return err
			}
		}
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
	case "probe":
		return probe()
	case "ptrace-pid1":
		// The child half of probe's ptrace check.
		if err := syscall.PtraceAttach(1); err != nil {
			fmt.Println(errName(err))
			return nil
		}
		_ = syscall.PtraceDetach(1)
		fmt.Println("ok")
	case "fork":
		n, err := intArg(rest)
		if err != nil {
			return err
		}
		return forkMany(n)
	case "flood":
		n, err := intArg(rest)
		if err != nil {
			return err
		}
		return flood(n)
	case "limits":
		return limits()
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
	return nil
}

// probe reports what the container may and may not do. Every forbidden operation is tried for
// real; the line says how the kernel answered.
func probe() error {
	if os.Getpid() != 1 {
		// Outside a container a forbidden operation may well succeed: never try them there.
		return errors.New("probe runs only as a container's PID 1")
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "Seccomp", "NoNewPrivs", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb":
			fmt.Printf("%s: %s\n", k, strings.TrimSpace(v))
		}
	}
	try := func(name string, err error) {
		if err != nil {
			fmt.Printf("%s: %s\n", name, errName(err))
		} else {
			fmt.Printf("%s: ok\n", name)
		}
	}
	_ = os.MkdirAll("/tmp/probe-mnt", 0o755)
	try("mount", syscall.Mount("none", "/tmp/probe-mnt", "tmpfs", 0, ""))
	try("unshare", syscall.Unshare(syscall.CLONE_NEWUSER))
	out, err := exec.Command("/proc/self/exe", "ptrace-pid1").Output()
	if err != nil {
		try("ptrace", err)
	} else {
		fmt.Printf("ptrace: %s\n", strings.TrimSpace(string(out)))
	}
	// The value written is the one read: even where the write goes through, nothing changes.
	domain, err := os.ReadFile("/proc/sys/kernel/domainname")
	if err == nil {
		var f *os.File
		if f, err = os.OpenFile("/proc/sys/kernel/domainname", os.O_WRONLY, 0); err == nil {
			_, err = f.Write(domain)
			f.Close()
		}
	}
	try("write /proc/sys", err)
	// Masked paths (kernel state a container must not read) read as empty. /proc/kcore is
	// masked too, but some kernels have none.
	for _, p := range []string{"/proc/timer_list", "/proc/keys"} {
		b, err := os.ReadFile(p)
		if err == nil && len(b) == 0 {
			err = errors.New("EMPTY")
		}
		try("read "+p, err)
	}
	fw, err := os.ReadDir("/sys/firmware")
	if err == nil && len(fw) == 0 {
		err = errors.New("EMPTY")
	}
	try("list /sys/firmware", err)
	self, err := os.ReadFile("/proc/self/exe")
	if err == nil {
		err = os.WriteFile("/tmp/probe-exe", self, 0o755)
	}
	if err == nil {
		err = exec.Command("/tmp/probe-exe", "id").Run()
	}
	try("exec in /tmp", err)
	return nil
}

// limits prints the limits of the container's cgroup, read from the cgroup filesystem the
// runtime mounts at /sys/fs/cgroup (the container's own cgroup under either version).
func limits() error {
	read := func(paths ...string) (string, error) {
		var first error
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err == nil {
				return strings.TrimSpace(string(b)), nil
			}
			if first == nil {
				first = err
			}
		}
		return "", first
	}
	const root = "/sys/fs/cgroup/"
	if _, err := os.Stat(root + "cgroup.controllers"); err == nil { // cgroup v2
		for _, l := range []struct{ name, file string }{{"cpu", "cpu.max"}, {"pids", "pids.max"}, {"memory", "memory.max"}} {
			v, err := read(root + l.file)
			if err != nil {
				return err
			}
			fmt.Printf("%s: %s\n", l.name, v)
		}
		return nil
	}
	quota, err := read(root+"cpu/cpu.cfs_quota_us", root+"cpu,cpuacct/cpu.cfs_quota_us")
	if err != nil {
		return err
	}
	period, err := read(root+"cpu/cpu.cfs_period_us", root+"cpu,cpuacct/cpu.cfs_period_us")
	if err != nil {
		return err
	}
	if quota == "-1" {
		quota = "max"
	}
	pids, err := read(root + "pids/pids.max")
	if err != nil {
		return err
	}
	mem, err := read(root + "memory/memory.limit_in_bytes")
	if err != nil {
		return err
	}
	// v1 spells "no limit" as the largest page-aligned int64.
	if n, err := strconv.ParseInt(mem, 10, 64); err == nil && n >= 1<<62 {
		mem = "max"
	}
	fmt.Printf("cpu: %s %s\npids: %s\nmemory: %s\n", quota, period, pids, mem)
	return nil
}

// errName gives the errno's name of err (EPERM, EROFS, ...), or err's text.
func errName(err error) string {
	var errno syscall.Errno
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if errors.As(err, &errno) {
		switch errno {
		case syscall.EPERM:
			return "EPERM"
		case syscall.EACCES:
			return "EACCES"
		case syscall.EROFS:
			return "EROFS"
		case syscall.EINVAL:
			return "EINVAL"
		case syscall.ENOENT:
			return "ENOENT"
		case syscall.ENOSYS:
			return "ENOSYS"
		case syscall.EAGAIN:
			return "EAGAIN"
		}
		return errno.Error()
	}
	return err.Error()
}

// forkMany forks children that only wait (raw fork: no Go runtime in the child, so each
// costs a few pages) until the kernel refuses one or n are running. The children die with
// the container's PID 1, this process.
func forkMany(n int) error {
	started := 0
	var first error
	for started < n {
		pid, _, errno := syscall.RawSyscall(syscall.SYS_FORK, 0, 0, 0)
		if errno != 0 {
			first = errno
			break
		}
		if pid == 0 {
			for {
				syscall.RawSyscall(syscall.SYS_PAUSE, 0, 0, 0)
			}
		}
		started++
	}
	if first != nil {
		fmt.Printf("forked %d of %d: %s\n", started, n, errName(first))
	} else {
		fmt.Printf("forked %d of %d\n", started, n)
	}
	return nil
}

// flood writes mb megabytes of 100-byte lines to stdout.
func flood(mb int) error {
	line := []byte(strings.Repeat("x", 99) + "\n")
	buf := make([]byte, 0, 1<<20)
	for len(buf)+len(line) <= cap(buf) {
		buf = append(buf, line...)
	}
	total := int64(mb) * 1_000_000
	for total > 0 {
		chunk := buf
		if int64(len(chunk)) > total {
			chunk = chunk[:total]
		}
		n, err := os.Stdout.Write(chunk)
		if err != nil {
			return err
		}
		total -= int64(n)
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
