package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// ProcStart returns the start time of process pid (clock ticks since boot, field 22 of
// /proc/<pid>/stat) and whether it is a zombie. Together with the pid the start time names a
// process uniquely, so a recorded pid that the kernel reused for another process is not
// mistaken for ours. Where /proc is missing it returns 0 and relies on kill(pid, 0).
func ProcStart(pid int) (start uint64, zombie bool, err error) {
	if pid <= 0 {
		return 0, false, fmt.Errorf("bad pid %d", pid)
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat("/proc/self/stat"); serr != nil {
			// No procfs: fall back to a liveness probe without identity.
			if kerr := syscall.Kill(pid, 0); kerr != nil && !errors.Is(kerr, syscall.EPERM) {
				return 0, false, os.ErrNotExist
			}
			return 0, false, nil
		}
		return 0, false, os.ErrNotExist
	}
	if err != nil {
		return 0, false, err
	}
	// The command name (field 2) is in parentheses and may contain spaces or ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, false, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fields := bytes.Fields(data[i+1:])
	// fields[0] is field 3 (state); field 22 (starttime) is fields[19].
	if len(fields) < 20 {
		return 0, false, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(fields))
	}
	start, err = strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return start, string(fields[0]) == "Z", nil
}

// alive reports whether the process recorded in r still runs (and is the same process).
func (r ProcRecord) Alive() bool {
	if r.PID <= 0 {
		return false
	}
	start, zombie, err := ProcStart(r.PID)
	if err != nil || zombie {
		return false
	}
	return r.ProcStart == 0 || start == 0 || start == r.ProcStart
}

// SignalGroup sends sig to the process group led by pid; a group already gone is success.
func SignalGroup(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal group %d: %w", pid, err)
	}
	return nil
}

// SignalProcess sends sig to pid; a process already gone is success.
func SignalProcess(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %d: %w", pid, err)
	}
	return nil
}

// child is a child process: its pid and process group.
type child struct{ pid, pgrp int }

// children returns the processes whose parent is pid, zombies included, read from /proc (nil
// without procfs).
func children(pid int) []child {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []child
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if parent, pgrp, err := parentOf(p); err == nil && parent == pid {
			kids = append(kids, child{pid: p, pgrp: pgrp})
		}
	}
	return kids
}

// parentOf returns the parent pid and the process group of pid (fields 4 and 5 of
// /proc/<pid>/stat).
func parentOf(pid int) (ppid, pgrp int, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fields := bytes.Fields(data[i+1:])
	if len(fields) < 3 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(fields))
	}
	if ppid, err = strconv.Atoi(string(fields[1])); err == nil {
		pgrp, err = strconv.Atoi(string(fields[2]))
	}
	return ppid, pgrp, err
}
