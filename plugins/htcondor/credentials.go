package htcondor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kbase/cts/shared/launcher"
)

// The procs' credential files (one per container of a launch, written by Submit into
// initial_dir, mode 0600, and transferred by HTCondor into the proc's sandbox) live exactly as
// long as HTCondor may still need them: a proc in the queue (idle, running, held, being
// removed) may start again and must find its file. They are removed
//   - by Submit, when condor_submit failed and no cluster of the (job, attempt) exists;
//   - by the sweep (SweepCredentials, every credential_sweep_seconds), once the proc is in
//     the history and no longer in the queue: positive evidence, never the mere absence of a
//     proc from the queue, so an unreachable or misconfigured schedd never deletes a live
//     proc's file, and a file another plugin process is about to submit stays;
//   - by the sweep, when a file has neither a queue nor a history entry and is older than
//     orphanCredentialAge (a submit that crashed between the write and condor_submit).

// orphanCredentialAge is how old a credential file with no proc in the queue or the history
// must be before the sweep removes it. It is far longer than any condor_submit takes.
const orphanCredentialAge = 24 * time.Hour

// credentialKey names one proc's credential file.
type credentialKey struct {
	job           string
	attempt, proc int
}

// parseCredentialName reads cts-<job>-<attempt>-<proc>.credential (job IDs may contain '-').
func parseCredentialName(name string) (credentialKey, bool) {
	rest, ok := strings.CutPrefix(name, "cts-")
	if !ok {
		return credentialKey{}, false
	}
	if rest, ok = strings.CutSuffix(rest, CredentialSuffix); !ok {
		return credentialKey{}, false
	}
	i := strings.LastIndexByte(rest, '-')
	if i < 0 {
		return credentialKey{}, false
	}
	proc, err1 := strconv.Atoi(rest[i+1:])
	rest = rest[:i]
	j := strings.LastIndexByte(rest, '-')
	if j < 0 {
		return credentialKey{}, false
	}
	attempt, err2 := strconv.Atoi(rest[j+1:])
	job := rest[:j]
	if err1 != nil || err2 != nil || proc < 0 || attempt < 0 || launcher.ValidateJobID(job) != nil {
		return credentialKey{}, false
	}
	return credentialKey{job: job, attempt: attempt, proc: proc}, true
}

// removeCredentials removes the credential files (and any leftover temporary file) of
// containers 0..n-1 of one launch. A file already gone is success.
func removeCredentials(cfg Config, jobID string, attempt, n int) error {
	var errs []error
	for p := range n {
		f := CredentialFile(cfg, jobID, attempt, p)
		for _, name := range []string{f, f + ".tmp"} {
			if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// SweepCredentials removes the credential files of initial_dir whose proc has left the queue
// (see the rules above) and returns how many it removed. A failing condor_q or condor_history
// removes nothing of the batch it was asked about.
func (l *Launcher) SweepCredentials(ctx context.Context) (int, error) {
	cfg, t, err := l.current()
	if err != nil {
		return 0, fmt.Errorf("sweep credentials: %w", err)
	}
	entries, err := os.ReadDir(cfg.InitialDir)
	if err != nil {
		return 0, fmt.Errorf("sweep credentials: %w", err)
	}
	files := map[credentialKey]string{}
	type launchKey struct {
		job     string
		attempt int
	}
	var launches []launchKey
	seen := map[launchKey]bool{}
	removed := 0
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if tmp, ok := strings.CutSuffix(name, CredentialSuffix+".tmp"); ok && strings.HasPrefix(tmp, "cts-") {
			// A write that crashed before its rename.
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > orphanCredentialAge {
				if err := os.Remove(filepath.Join(cfg.InitialDir, name)); err == nil {
					removed++
				}
			}
			continue
		}
		k, ok := parseCredentialName(name)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		files[k] = filepath.Join(cfg.InitialDir, name)
		lk := launchKey{k.job, k.attempt}
		if !seen[lk] {
			seen[lk] = true
			launches = append(launches, lk)
		}
	}
	attrs := []string{"CTSJobID", "CTSAttempt", "ProcId"}
	procs := func(ads []ad) map[credentialKey]bool {
		m := map[credentialKey]bool{}
		for _, a := range ads {
			att, ok1 := a.int("CTSAttempt")
			p, ok2 := a.int("ProcId")
			if ok1 && ok2 {
				m[credentialKey{job: a.str("CTSJobID"), attempt: int(att), proc: int(p)}] = true
			}
		}
		return m
	}
	for start := 0; start < len(launches); start += statusBatch {
		batch := launches[start:min(start+statusBatch, len(launches))]
		parts := make([]string, len(batch))
		for i, lk := range batch {
			parts[i] = fmt.Sprintf("(CTSJobID =?= %s && CTSAttempt =?= %d)", strconv.Quote(lk.job), lk.attempt)
		}
		constraint := strings.Join(parts, " || ")
		// The queue first: a proc that leaves it meanwhile is then found in the history.
		q, err := t.query(ctx, cfg.CondorQ, constraint, attrs)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		h, err := t.query(ctx, cfg.CondorHistory, constraint, attrs)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		inQueue, inHistory := procs(q), procs(h)
		for _, lk := range batch {
			for k, path := range files {
				if k.job != lk.job || k.attempt != lk.attempt || inQueue[k] {
					continue
				}
				if !inHistory[k] {
					info, err := os.Stat(path)
					if err != nil || time.Since(info.ModTime()) <= orphanCredentialAge {
						continue
					}
				}
				if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, err)
					continue
				}
				removed++
				l.log.Debug("removed credential file", "job_id", k.job, "attempt", k.attempt, "container", k.proc)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("sweep credentials: %w", err)
	}
	return removed, nil
}

// sweep runs SweepCredentials every sweepInterval of the current configuration until stop
// is closed.
func (l *Launcher) sweep(stop <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-stop
		cancel()
	}()
	for {
		cfg, _, err := l.current()
		interval := DefaultCredentialSweepSeconds * time.Second
		if err == nil {
			interval = cfg.sweepInterval()
		}
		timer := time.NewTimer(interval)
		select {
		case <-stop:
			timer.Stop()
			return
		case <-timer.C:
		}
		if n, err := l.SweepCredentials(ctx); err != nil && ctx.Err() == nil {
			l.log.Warn("credential sweep failed; the files are kept until a sweep succeeds", "error", err, "removed", n)
		} else if n > 0 {
			l.log.Info("credential sweep", "removed", n)
		}
	}
}
