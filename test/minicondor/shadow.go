package minicondor

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ShadowCommand is the hidden first argument that runs a proc's shadow.
const ShadowCommand = "__shadow"

// defaultVacate is the grace between SIGTERM and SIGKILL when job_max_vacate_time is unset.
const defaultVacate = 10 * time.Second

// HTCondor hold reason codes the simulator uses.
const (
	HoldCodeJobPolicy         = 3
	HoldCodeTransferInput     = 13
	HoldCodeDurationExceeded  = 46
	holdReasonOnExitHoldTrue  = "The job attribute OnExitHold expression '%s' evaluated to TRUE"
	holdReasonDurationExceeds = "The job exceeded allowed job duration of %d seconds"
)

// spawnShadow starts the detached shadow of proc id.
func spawnShadow(st *State, id string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(st.Dir, "shadow", id+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(self, ShadowCommand, id)
	cmd.Env = []string{EnvDir + "=" + st.Dir, "PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}

// update applies f to proc id's queue ad under the lock. f returns whether the proc leaves the
// queue for the history. A proc that is no longer in the queue gives (nil, nil).
func (st *State) update(id string, f func(Ad) (toHistory bool)) (Ad, error) {
	unlock, err := st.Lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	ad, err := st.QueueAd(id)
	if err != nil || ad == nil {
		return nil, err
	}
	if f(ad) {
		return ad, st.toHistory(ad)
	}
	return ad, st.writeQueue(ad)
}

func setStatus(ad Ad, status int, now time.Time) {
	if cur, _ := ad.Int("JobStatus"); cur != int64(status) {
		ad["LastJobStatus"] = cur
	}
	ad["JobStatus"] = int64(status)
	ad["EnteredCurrentStatus"] = now.Unix()
}

// RunShadow runs proc id to its end: transfer inputs, start, watch for removal and the
// allowed duration, record the exit.
func RunShadow(st *State, id string) error {
	ad, err := st.QueueAd(id)
	if err != nil || ad == nil {
		return err
	}
	scratch := st.ScratchDir(id)
	exe, terr := transferInputs(ad, scratch)
	if terr != nil {
		_, err := st.update(id, func(ad Ad) bool {
			if s, _ := ad.Int("JobStatus"); s != StatusIdle {
				return s == StatusRemoved
			}
			setStatus(ad, StatusHeld, time.Now())
			ad["HoldReason"] = "Transfer input files failure: " + terr.Error()
			ad["HoldReasonCode"] = int64(HoldCodeTransferInput)
			ad["HoldReasonSubCode"] = int64(0)
			return false
		})
		return err
	}

	var cmd *exec.Cmd
	var started time.Time
	var startErr error
	ad, err = st.update(id, func(ad Ad) bool {
		if s, _ := ad.Int("JobStatus"); s != StatusIdle {
			return s == StatusRemoved // removed before it started: to the history
		}
		cmd, startErr = startProc(ad, exe, scratch)
		started = time.Now()
		if startErr != nil {
			setStatus(ad, StatusHeld, started)
			ad["HoldReason"] = "Error from starter: " + startErr.Error()
			ad["HoldReasonCode"] = int64(6)
			ad["HoldReasonSubCode"] = int64(0)
			return false
		}
		setStatus(ad, StatusRunning, started)
		ad["JobStartDate"], ad["JobCurrentStartDate"], ad["JobCurrentStartExecutingDate"] = started.Unix(), started.Unix(), started.Unix()
		ad["NumJobStarts"], ad["JobRunCount"] = int64(1), int64(1)
		ad["RemoteHost"], ad["StartdPrincipal"] = "slot1@minicondor", "execute-side@matchsession/127.0.0.1"
		ad["MiniPid"] = int64(cmd.Process.Pid)
		return false
	})
	if err != nil || ad == nil || cmd == nil || startErr != nil {
		if cmd != nil && cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
		return errors.Join(err, startErr)
	}
	return watch(st, id, ad, cmd, started)
}

// transferInputs fills the scratch directory and returns the path to execute.
func transferInputs(ad Ad, scratch string) (string, error) {
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return "", err
	}
	exe := ad.String("Cmd")
	if tx, ok := ad["TransferExecutable"].(bool); !ok || tx {
		dst := filepath.Join(scratch, filepath.Base(exe))
		if err := copyFile(exe, dst, 0o755); err != nil {
			return "", fmt.Errorf("executable: %w", err)
		}
		exe = dst
	}
	for _, f := range strings.Split(ad.String("TransferInput"), ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.HasPrefix(f, "http://") || strings.HasPrefix(f, "https://") {
			if err := fetch(f, filepath.Join(scratch, filepath.Base(strings.SplitN(f, "?", 2)[0]))); err != nil {
				return "", err
			}
			continue
		}
		if !filepath.IsAbs(f) {
			f = filepath.Join(ad.String("Iwd"), f)
		}
		if err := copyFile(f, filepath.Join(scratch, filepath.Base(f)), 0); err != nil {
			return "", err
		}
	}
	return exe, nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if mode == 0 {
		mode = fi.Mode().Perm()
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func fetch(url, dst string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func iwdPath(ad Ad, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(ad.String("Iwd"), p)
}

func openOut(p string) (*os.File, error) {
	if p == "" || p == "/dev/null" {
		return nil, nil
	}
	return os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
}

// startProc starts the proc's process in its own process group.
func startProc(ad Ad, exe, scratch string) (*exec.Cmd, error) {
	var args []string
	if a := ad.String("Args"); a != "" {
		var err error
		if args, err = SplitNewSyntax(a); err != nil {
			return nil, err
		}
	}
	var env []string
	if e := ad.String("Environment"); e != "" {
		var err error
		if env, err = ParseEnvironment(e); err != nil {
			return nil, err
		}
	}
	env = append(env, "_CONDOR_SCRATCH_DIR="+scratch, "_CONDOR_SLOT=slot1", "TMPDIR="+scratch)
	cmd := exec.Command(exe, args...)
	cmd.Dir = scratch
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := openOut(iwdPath(ad, ad.String("Out")))
	if err != nil {
		return nil, err
	}
	stderr, err := openOut(iwdPath(ad, ad.String("Err")))
	if err != nil {
		return nil, err
	}
	if l := iwdPath(ad, ad.String("UserLog")); l != "" {
		if f, err := os.OpenFile(l, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			f.Close()
		}
	}
	if stdout != nil {
		cmd.Stdout = stdout
		defer stdout.Close()
	}
	if stderr != nil {
		cmd.Stderr = stderr
		defer stderr.Close()
	}
	return cmd, cmd.Start()
}

// watch waits for the process, carrying out removal and the duration limit, and records the
// end.
func watch(st *State, id string, ad Ad, cmd *exec.Cmd, started time.Time) error {
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	vacate := defaultVacate
	if v, ok := ad.Int("JobMaxVacateTime"); ok && v >= 0 {
		vacate = time.Duration(v) * time.Second
	}
	var deadline <-chan time.Time
	if d, ok := ad.Int("AllowedJobDuration"); ok && d > 0 {
		deadline = time.After(time.Duration(d)*time.Second - time.Since(started))
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var killAt <-chan time.Time
	removing, exceeded := false, false
	stop := func(graceful bool) {
		if graceful {
			_ = syscall.Kill(-pgid, syscall.SIGTERM)
			killAt = time.After(vacate)
		} else {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}
	for {
		select {
		case <-done:
			// The starter cleans up whatever the job left behind in its process group.
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			return finish(st, id, cmd.ProcessState, started, exceeded)
		case <-deadline:
			deadline = nil
			if !removing {
				exceeded = true
				stop(true)
			}
		case <-killAt:
			killAt = nil
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		case <-tick.C:
			if removing {
				continue
			}
			cur, err := st.QueueAd(id)
			if err != nil || cur == nil {
				continue
			}
			if s, _ := cur.Int("JobStatus"); s == StatusRemoved {
				removing = true
				if killAt == nil {
					stop(cur.Bool("WantGracefulRemoval"))
				}
			}
		}
	}
}

// finish records the proc's end.
func finish(st *State, id string, ps *os.ProcessState, started time.Time, exceeded bool) error {
	now := time.Now()
	_, err := st.update(id, func(ad Ad) bool {
		wall := now.Sub(started).Seconds()
		// As in a real ad (plugins/htcondor/testdata/real): RemoteWallClockTime counts every
		// run, CommittedTime only a run that was not evicted (a hold is an eviction), and
		// CompletionDate stays 0 until the proc leaves the queue.
		ad["RemoteWallClockTime"] = wall
		ad["CompletionDate"] = int64(0)
		ad["CommittedTime"] = int64(0)
		ad["JobCurrentFinishTransferOutputDate"] = now.Unix()
		delete(ad, "MiniPid")
		var code *int
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			ad["ExitBySignal"] = true
			ad["ExitSignal"] = int64(ws.Signal())
		} else {
			c := ps.ExitCode()
			code = &c
			ad["ExitBySignal"] = false
			ad["ExitCode"] = int64(c)
			ad["ExitStatus"] = int64(c)
		}
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			ad["RemoteUserCpu"] = float64(ru.Utime.Sec) + float64(ru.Utime.Usec)/1e6
			ad["RemoteSysCpu"] = float64(ru.Stime.Sec) + float64(ru.Stime.Usec)/1e6
			ad["CumulativeRemoteUserCpu"], ad["CumulativeRemoteSysCpu"] = ad["RemoteUserCpu"], ad["RemoteSysCpu"]
			// KiB. MemoryUsage stays condor_submit's expression over it, as in a real ad.
			ad["ResidentSetSize"] = ru.Maxrss
		}
		status, _ := ad.Int("JobStatus")
		switch {
		case status == StatusRemoved:
			ad["CompletionDate"] = now.Unix()
			if ad.String("RemoveReason") == "" {
				ad["RemoveReason"] = "via condor_rm (by user " + ad.String("Owner") + ")"
			}
			setStatus(ad, StatusRemoved, now)
			return true
		case exceeded:
			d, _ := ad.Int("AllowedJobDuration")
			setStatus(ad, StatusHeld, now)
			ad["HoldReason"] = fmt.Sprintf(holdReasonDurationExceeds, d)
			ad["HoldReasonCode"] = int64(HoldCodeDurationExceeded)
			ad["HoldReasonSubCode"] = int64(0)
			return false
		}
		hold, err := onExitHold(ad.ExprText("OnExitHold"), code)
		if err == nil && hold {
			setStatus(ad, StatusHeld, now)
			ad["HoldReason"] = fmt.Sprintf(holdReasonOnExitHoldTrue, ad.ExprText("OnExitHold"))
			ad["HoldReasonCode"] = int64(HoldCodeJobPolicy)
			ad["HoldReasonSubCode"] = int64(0)
			return false
		}
		ad["CompletionDate"] = now.Unix()
		ad["CommittedTime"] = int64(wall + 0.5)
		setStatus(ad, StatusCompleted, now)
		return true
	})
	return err
}
