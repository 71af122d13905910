package agentws

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kbase/cts/coordinator/internal/poll"
	"github.com/kbase/cts/shared/protocol"
)

// Live data across replicas.
//
// The live log lines and the transfer progress of a container are in the memory of the
// replica its agent is connected to. A reader on another replica (a follower of a live log,
// GET /jobs/{id}/progress) sees them through the store, published on demand:
//
//   - the reader records its interest in a job (progress) or in one container of it (live
//     logs), for a minute, renewed while it reads: live_interest {_id: key, until};
//   - every replica reads the current interests once per interval (one query on a collection
//     that holds only what is being read right now) and, for the jobs of interest whose
//     agents are connected here, writes what changed: one document per job and replica,
//     live {_id: "<job>@<replica>", job, replica, at, progress, logs};
//   - the reader reads the job's documents once per interval and merges them with its own.
//
// Nothing is written for what nobody reads: the cost follows the readers, not the agents.

// Shared is the store side of the live data (implemented by package store).
type Shared interface {
	// SetInterest records interest in key ("<job>" or "<job>/<container>") until until, and
	// reports whether an interest in it was current already.
	SetInterest(ctx context.Context, key string, until time.Time) (current bool, err error)
	// Interests returns the keys of the interests current at now.
	Interests(ctx context.Context, now time.Time) ([]string, error)
	// PutLive records doc, replacing the document with its ID.
	PutLive(ctx context.Context, doc LiveDoc) error
	// LiveDocs returns the live documents of job jobID (one per replica that published).
	LiveDocs(ctx context.Context, jobID string) ([]LiveDoc, error)
	// PruneLive deletes the live documents written, and the interests that ended, before before.
	PruneLive(ctx context.Context, before time.Time) error
}

// LiveDoc is what one replica published of one job.
type LiveDoc struct {
	ID       string         `bson:"_id"`
	JobID    string         `bson:"job"`
	Replica  string         `bson:"replica"`
	At       time.Time      `bson:"at"`
	Progress []LiveProgress `bson:"progress,omitempty"`
	Logs     []LiveLog      `bson:"logs,omitempty"`
}

// LiveProgress is a container's latest progress in a LiveDoc.
type LiveProgress struct {
	Container  int       `bson:"c"`
	Phase      string    `bson:"phase"`
	BytesDone  int64     `bson:"bytes_done"`
	BytesTotal int64     `bson:"bytes_total"`
	FilesDone  int       `bson:"files_done"`
	FilesTotal int       `bson:"files_total"`
	Updated    time.Time `bson:"updated"`
}

// LiveLog is a container's recent lines in a LiveDoc.
type LiveLog struct {
	Container int        `bson:"c"`
	Lines     []LiveLine `bson:"lines"`
}

// LiveLine is one line of a LiveLog.
type LiveLine struct {
	Seq    int64     `bson:"seq"`
	Stream string    `bson:"s"`
	Text   string    `bson:"t"`
	Time   time.Time `bson:"at"`
}

// sharedLines is how many recent lines of a followed container a replica publishes.
const sharedLines = 200

// interestFor is how long an interest lasts; a reader renews it every interestRenew.
const (
	interestFor   = time.Minute
	interestRenew = 20 * time.Second
)

// liveKey names a job's interest (progress) or one container's (logs).
func liveKey(job string, container int) string {
	if container < 0 {
		return job
	}
	return job + "/" + strconv.Itoa(container)
}

// shared is a Handler's side of the live data across replicas.
type shared struct {
	store    Shared
	replica  string
	interval time.Duration

	mu        sync.Mutex
	published map[string]string    // doc ID → fingerprint of what was last written
	renewed   map[string]time.Time // interest key → until when this replica recorded it
}

// setInterest records interest in key unless this replica did recently; it reports whether
// an interest was current before.
func (s *shared) setInterest(ctx context.Context, key string) (bool, error) {
	now := time.Now()
	s.mu.Lock()
	until, ok := s.renewed[key]
	s.mu.Unlock()
	if ok && until.Sub(now) > interestFor-interestRenew {
		return true, nil
	}
	current, err := s.store.SetInterest(ctx, key, now.Add(interestFor))
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	s.renewed[key] = now.Add(interestFor)
	for k, u := range s.renewed {
		if u.Before(now) {
			delete(s.renewed, k)
		}
	}
	s.mu.Unlock()
	return current, nil
}

// Run publishes this replica's live data of the jobs of interest once per interval, and
// prunes what is old about once a minute, until ctx ends. Without a Shared store it only
// waits.
func (h *Handler) Run(ctx context.Context) error {
	if h.shared == nil {
		<-ctx.Done()
		return nil
	}
	return poll.Loop{Interval: h.shared.interval, Poll: h.publish, Log: h.log,
		Prune: func(ctx context.Context) error {
			return h.shared.store.PruneLive(ctx, time.Now().Add(-10*time.Minute))
		},
		Failing:     "live data: publishing to the other replicas failed; retrying",
		PruneFailed: "live data: prune failed",
	}.Run(ctx)
}

// publish writes what changed of the jobs of interest that have data here.
func (h *Handler) publish(ctx context.Context) error {
	sh := h.shared
	keys, err := sh.store.Interests(ctx, time.Now())
	if err != nil {
		return err
	}
	progressJobs := map[string]bool{}
	logs := map[string][]int{}
	for _, k := range keys {
		job, c, ok := strings.Cut(k, "/")
		if !ok {
			progressJobs[job] = true
			continue
		}
		if n, err := strconv.Atoi(c); err == nil {
			logs[job] = append(logs[job], n)
		}
	}
	jobs := map[string]bool{}
	for j := range progressJobs {
		jobs[j] = true
	}
	for j := range logs {
		jobs[j] = true
	}
	var errs []error
	for job := range jobs {
		doc := LiveDoc{ID: job + "@" + sh.replica, JobID: job, Replica: sh.replica}
		if progressJobs[job] {
			for c, p := range h.progress.get(job) {
				doc.Progress = append(doc.Progress, LiveProgress{Container: c, Phase: p.Phase, BytesDone: p.BytesDone,
					BytesTotal: p.BytesTotal, FilesDone: p.FilesDone, FilesTotal: p.FilesTotal, Updated: p.Updated.UTC()})
			}
			sort.Slice(doc.Progress, func(a, b int) bool { return doc.Progress[a].Container < doc.Progress[b].Container })
		}
		for _, c := range logs[job] {
			lines := h.logs.recent(job, c, sharedLines)
			if len(lines) == 0 {
				continue
			}
			ll := LiveLog{Container: c}
			for _, l := range lines {
				ll.Lines = append(ll.Lines, LiveLine{Seq: l.Seq, Stream: l.Stream, Text: l.Text, Time: l.Time.UTC()})
			}
			doc.Logs = append(doc.Logs, ll)
		}
		if len(doc.Progress) == 0 && len(doc.Logs) == 0 {
			continue
		}
		fp := fingerprint(doc)
		sh.mu.Lock()
		same := sh.published[doc.ID] == fp
		sh.mu.Unlock()
		if same {
			continue
		}
		doc.At = time.Now().UTC()
		if err := sh.store.PutLive(ctx, doc); err != nil {
			errs = append(errs, err)
			continue
		}
		sh.mu.Lock()
		sh.published[doc.ID] = fp
		sh.mu.Unlock()
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// fingerprint tells two publications of a job apart without comparing their lines.
func fingerprint(d LiveDoc) string {
	var b strings.Builder
	for _, p := range d.Progress {
		b.WriteString(strconv.Itoa(p.Container) + ":" + strconv.FormatInt(p.Updated.UnixNano(), 36) + ",")
	}
	b.WriteString("|")
	for _, l := range d.Logs {
		b.WriteString(strconv.Itoa(l.Container) + ":" + strconv.FormatInt(l.Lines[len(l.Lines)-1].Seq, 36) + ",")
	}
	return b.String()
}

// remoteProgress returns the progress other replicas published for job, after recording
// interest in it; when nobody read it before and wait is set (this replica knows of none of
// its containers), it waits up to two intervals for their first publication.
func (h *Handler) remoteProgress(ctx context.Context, job string, wait bool) map[int]ContainerProgress {
	sh := h.shared
	current, err := sh.setInterest(ctx, liveKey(job, -1))
	if err != nil {
		h.log.WarnContext(ctx, "progress: record interest for the other replicas", "job_id", job, "error", err)
		return nil
	}
	since := time.Now()
	deadline := since.Add(2*sh.interval + 500*time.Millisecond)
	for {
		docs, err := sh.store.LiveDocs(ctx, job)
		if err != nil {
			h.log.WarnContext(ctx, "progress: read the other replicas'", "job_id", job, "error", err)
			return nil
		}
		out := map[int]ContainerProgress{}
		fresh := false
		for _, d := range docs {
			if d.Replica == sh.replica {
				continue
			}
			fresh = fresh || !d.At.Before(since)
			for _, p := range d.Progress {
				if cur, ok := out[p.Container]; !ok || p.Updated.After(cur.Updated) {
					out[p.Container] = ContainerProgress{Progress: protocol.Progress{Phase: p.Phase, BytesDone: p.BytesDone,
						BytesTotal: p.BytesTotal, FilesDone: p.FilesDone, FilesTotal: p.FilesTotal}, Updated: p.Updated}
				}
			}
		}
		if !wait || current || fresh || time.Now().After(deadline) || ctx.Err() != nil {
			return out
		}
		select {
		case <-ctx.Done():
			return out
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// remoteFollower merges the lines other replicas publish of one container into a follower's
// channel.
type remoteFollower struct {
	h         *Handler
	job       string
	container int
	last      map[string]int64 // replica → highest seq delivered
}

// read returns the lines of the other replicas' documents newer than what was delivered.
func (f *remoteFollower) read(ctx context.Context) ([]LogLine, error) {
	docs, err := f.h.shared.store.LiveDocs(ctx, f.job)
	if err != nil {
		return nil, err
	}
	var out []LogLine
	for _, d := range docs {
		if d.Replica == f.h.shared.replica {
			continue
		}
		for _, l := range d.Logs {
			if l.Container != f.container {
				continue
			}
			for _, ln := range l.Lines {
				if ln.Seq > f.last[d.Replica] {
					out = append(out, LogLine{Stream: ln.Stream, Text: ln.Text, Time: ln.Time, Seq: ln.Seq})
					f.last[d.Replica] = ln.Seq
				}
			}
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Time.Before(out[b].Time) })
	return out, nil
}
