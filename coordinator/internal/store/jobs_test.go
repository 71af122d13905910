package store_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/kbase/cts/coordinator/internal/images"
	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/args"
	"github.com/kbase/cts/shared/job"
)

// t0 has nanoseconds on purpose: the store truncates to the millisecond.
var t0 = time.Date(2025, 4, 2, 12, 0, 0, 345_678_912, time.UTC)

func ptr[T any](v T) *T { return &v }

func fullInput() jobinput.JobInput {
	return jobinput.JobInput{
		Cluster: "kbase",
		Image:   "ghcr.io/kbase/tool:1.0",
		Params: args.Parameters{
			InputMountPoint:   "/in",
			OutputMountPoint:  "/out",
			Declobber:         true,
			RefdataMountPoint: "/ref",
			Args: []args.Arg{
				{Literal: "--threads"},
				{Literal: "4"},
				{Param: &args.Parameter{Type: args.TypeInputFiles, InputFilesFormat: args.CommaSeparatedList, Flag: "--in="}},
				{Param: &args.Parameter{Type: args.TypeContainerNumber, ContainerNumPrefix: "c", ContainerNumSuffix: ".x"}},
			},
			Environment: args.Environment{
				{Key: "ZED", Value: args.Arg{Literal: "last_in_alphabet_first_here"}},
				{Key: "MANIFEST", Value: args.Arg{Param: &args.Parameter{Type: args.TypeManifestFile, ManifestFileFormat: "files", ManifestFileHeader: "h\tx"}}},
				{Key: "ALPHA", Value: args.Arg{Literal: "a"}},
			},
		},
		NumContainers:  2,
		CPUs:           4,
		Memory:         10_000_000_000,
		RuntimeSeconds: 60,
		InputRoots:     []string{"bucket/in"},
		OutputDir:      "bucket/out/",
		InputFiles: []jobinput.InputFile{
			{File: "bucket/in/a", CRC64NVME: "AAAAAAAAAAA=", DataID: "d1"},
			{File: "bucket/in/b", CRC64NVME: "BBBBBBBBBBB="},
		},
	}
}

// newJob returns a job in state created with one transition.
func newJob(id, user, cluster string, at time.Time) *jobs.Job {
	in := fullInput()
	in.Cluster = cluster
	return &jobs.Job{
		ID:             id,
		User:           user,
		State:          job.Created,
		UpdateTime:     at,
		Transitions:    []jobs.Transition{{State: job.Created, Time: at, TransID: id + "-t0"}},
		Input:          in,
		Image:          images.Image{Name: "ghcr.io/kbase/tool", Digest: "sha256:abc", Entrypoint: []string{"run"}, RegisteredBy: "admin", RegisteredOn: at},
		InputFileCount: len(in.InputFiles),
	}
}

// fullJob has every field of jobs.Job set (checked by reflection, so a field added to the
// contract fails the round-trip test until this fixture sets it).
func fullJob() *jobs.Job {
	return &jobs.Job{
		ID:          "full",
		User:        "alice",
		AdminMeta:   map[string]any{"k": "v", "flag": true},
		State:       job.Complete,
		UpdateTime:  t0,
		Transitions: []jobs.Transition{{State: job.Created, Time: t0, TransID: "tr1"}, {State: job.Complete, Time: t0.Add(time.Hour), TransID: "tr2", NotifSent: true}},
		Input:       fullInput(),
		Image: images.Image{
			Name: "ghcr.io/kbase/tool", Digest: "sha256:abc", Tag: "1.0", Entrypoint: []string{"run", "it"},
			RefdataID: "r1", DefaultRefdataMountPoint: "/ref", RegisteredBy: "admin", RegisteredOn: t0,
			URLs: []string{"https://x"}, UsageNotes: "notes",
		},
		InputFileCount: 2,
		InputSizes:     []int64{1, 2},
		Cleaned:        true,
		Launch:         &jobs.Launch{Site: "kbase", Handle: "123"},
		Outputs:        []jobs.Output{{File: "bucket/out/x", CRC64NVME: "CCCCCCCCCCC="}},
		OutputsManifests: []jobs.Manifest{{Container: 1, File: "logs/j/container-1-outputs.jsonl", Count: 1001,
			Size: 90090, CRC64NVME: "DDDDDDDDDDD="}},
		OutputFileCount: ptr(1),
		Error:           "user error",
		AdminError:      "admin error",
		Traceback:       "tb",
		LogPath:         "bucket/logs/full",
		CPUHours:        ptr(1.5),
		CPUFactor:       ptr(0.9),
		MaxMemory:       ptr(int64(123456)),
	}
}

func TestFullJobFixtureSetsEveryField(t *testing.T) {
	v := reflect.ValueOf(*fullJob())
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Errorf("fullJob leaves %s unset", v.Type().Field(i).Name)
		}
	}
}

func TestCreateGetJobRoundTrip(t *testing.T) {
	s, db := newStore(t)
	ctx := t.Context()
	j := fullJob()
	subs := []jobs.SubJob{
		{SubID: 1, State: job.Created, UpdateTime: t0, Transitions: []jobs.Transition{{State: job.Created, Time: t0}}},
		{SubID: 0, State: job.Created, UpdateTime: t0, Transitions: []jobs.Transition{{State: job.Created, Time: t0}}, ExitCode: ptr(0), Outputs: []jobs.Output{}},
	}
	if err := s.CreateJob(ctx, j, subs); err != nil {
		t.Fatal(err)
	}
	if want := t0.Truncate(time.Millisecond); !j.UpdateTime.Equal(want) || j.UpdateTime.Nanosecond() != want.Nanosecond() {
		t.Fatalf("CreateJob left UpdateTime %v, want it truncated to %v", j.UpdateTime, want)
	}
	got, err := s.GetJob(ctx, "full")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, j) {
		t.Fatalf("round trip differs:\n got %#v\nwant %#v", got, j)
	}
	gotSubs, err := s.GetSubJobs(ctx, "full")
	if err != nil {
		t.Fatal(err)
	}
	if len(gotSubs) != 2 || gotSubs[0].SubID != 0 || gotSubs[1].SubID != 1 {
		t.Fatalf("sub-jobs = %+v, want sub_id 0 then 1", gotSubs)
	}
	if !reflect.DeepEqual(gotSubs[0], subs[1]) || !reflect.DeepEqual(gotSubs[1], subs[0]) {
		t.Fatalf("sub-job round trip differs:\n got %#v\nwant %#v", gotSubs, subs)
	}

	t.Run("job_input is stored in its JSON form", func(t *testing.T) {
		var raw bson.Raw
		if err := db.Collection("jobs").FindOne(ctx, bson.D{{Key: "id", Value: "full"}}).Decode(&raw); err != nil {
			t.Fatal(err)
		}
		in := raw.Lookup("job_input")
		if rt := in.Document().Lookup("runtime"); rt.Type != bson.TypeDouble || rt.Double() != 60 {
			t.Fatalf("runtime stored as %v %v, want double 60", rt.Type, rt)
		}
		stored, err := bson.MarshalExtJSON(in.Document(), false, false)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(j.Input)
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		if err := json.Unmarshal(stored, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(want, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("stored job_input\n%s\nis not the JSON form\n%s", stored, want)
		}
		if raw.Lookup("_update_time").Type != bson.TypeDateTime {
			t.Fatal("_update_time is not a BSON date")
		}
	})

	t.Run("missing job", func(t *testing.T) {
		_, err := s.GetJob(ctx, "nope")
		isErr(t, err, jobs.ErrNotFound)
		subs, err := s.GetSubJobs(ctx, "nope")
		isErr(t, err, nil)
		if subs == nil || len(subs) != 0 {
			t.Fatalf("GetSubJobs of a missing job = %#v, want empty", subs)
		}
	})

	t.Run("duplicate job", func(t *testing.T) {
		err := s.CreateJob(ctx, fullJob(), nil)
		isErr(t, err, jobs.ErrConflict)
		err = s.CreateJob(ctx, fullJob(), []jobs.SubJob{{SubID: 0, State: job.Created}})
		isErr(t, err, jobs.ErrConflict)
		// New sub-job IDs get in before the job insert fails: they are removed, and the
		// existing job's sub-jobs are kept.
		err = s.CreateJob(ctx, fullJob(), []jobs.SubJob{{SubID: 5, State: job.Created}})
		isErr(t, err, jobs.ErrConflict)
		subs, err := s.GetSubJobs(ctx, "full")
		if err != nil {
			t.Fatal(err)
		}
		if len(subs) != 2 || subs[0].SubID != 0 || subs[1].SubID != 1 {
			t.Fatalf("sub-jobs after a refused duplicate: %+v", subs)
		}
	})

	t.Run("nil admin_meta is stored as an object", func(t *testing.T) {
		j := newJob("nometa", "bob", "kbase", t0)
		if err := s.CreateJob(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
		var raw bson.Raw
		if err := db.Collection("jobs").FindOne(ctx, bson.D{{Key: "id", Value: "nometa"}}).Decode(&raw); err != nil {
			t.Fatal(err)
		}
		if typ := raw.Lookup("admin_meta").Type; typ != bson.TypeEmbeddedDocument {
			t.Fatalf("admin_meta stored as %v", typ)
		}
	})
}

func TestTransitionJob(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	if err := s.CreateJob(ctx, newJob("j1", "alice", "kbase", t0), nil); err != nil {
		t.Fatal(err)
	}
	t1 := t0.Add(time.Second)
	cases := []struct {
		name    string
		id      string
		from    []job.State
		to      job.State
		u       jobs.JobUpdate
		wantErr error
	}{
		{"legal with launch", "j1", []job.State{job.Created}, job.DownloadSubmitted,
			jobs.JobUpdate{Launch: &jobs.Launch{Site: "kbase", Handle: "42"}}, nil},
		{"illegal from created", "j1", []job.State{job.Created}, job.DownloadSubmitted, jobs.JobUpdate{}, jobs.ErrConflict},
		{"empty from", "j1", nil, job.Error, jobs.JobUpdate{}, jobs.ErrConflict},
		{"missing job", "nope", []job.State{job.Created}, job.DownloadSubmitted, jobs.JobUpdate{}, jobs.ErrNotFound},
		{"error with fields", "j1", job.Predecessors(job.Error), job.Error, jobs.JobUpdate{
			Error: "user msg", AdminError: "admin msg", Traceback: "tb", LogPath: "bucket/logs/j1",
			CPUHours: ptr(2.5), CPUFactor: ptr(1.0), MaxMemory: ptr(int64(99)),
			Outputs: []jobs.Output{{File: "f", CRC64NVME: "c"}}, OutputFileCount: ptr(1),
		}, nil},
		{"terminal", "j1", job.Predecessors(job.Canceling), job.Canceling, jobs.JobUpdate{}, jobs.ErrConflict},
	}
	want := newJob("j1", "alice", "kbase", t0)
	want.AdminMeta = map[string]any{}
	want.UpdateTime = want.UpdateTime.Truncate(time.Millisecond)
	want.Transitions[0].Time = want.UpdateTime
	want.Image.RegisteredOn = want.UpdateTime
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			at := t1.Add(time.Duration(i) * time.Second)
			tr := jobs.Transition{State: c.to, Time: at}
			got, err := s.TransitionJob(ctx, c.id, c.from, tr, c.u)
			isErr(t, err, c.wantErr)
			if c.wantErr != nil {
				if got != nil {
					t.Fatalf("got a job with an error: %+v", got)
				}
				return
			}
			if len(got.Transitions) == 0 || got.Transitions[len(got.Transitions)-1].TransID == "" {
				t.Fatalf("transition has no trans_id: %+v", got.Transitions)
			}
			tr.Time = at.Truncate(time.Millisecond)
			tr.TransID = got.Transitions[len(got.Transitions)-1].TransID
			want.State, want.UpdateTime = c.to, tr.Time
			want.Transitions = append(want.Transitions, tr)
			if c.u.Launch != nil {
				want.Launch = c.u.Launch
			}
			if c.u.Error != "" {
				want.Error, want.AdminError, want.Traceback, want.LogPath = c.u.Error, c.u.AdminError, c.u.Traceback, c.u.LogPath
				want.CPUHours, want.CPUFactor, want.MaxMemory = c.u.CPUHours, c.u.CPUFactor, c.u.MaxMemory
				want.Outputs, want.OutputFileCount = c.u.Outputs, c.u.OutputFileCount
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("after transition:\n got %#v\nwant %#v", got, want)
			}
			stored, err := s.GetJob(ctx, c.id)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(stored, got) {
				t.Fatalf("stored job differs from the returned one:\n got %#v\nwant %#v", stored, got)
			}
		})
	}
}

// TestTransitionJobRace has 8 goroutines race the same transition: exactly one may win.
func TestTransitionJobRace(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	const racers, rounds = 8, 10
	for r := range rounds {
		id := fmt.Sprintf("race%d", r)
		if err := s.CreateJob(ctx, newJob(id, "alice", "kbase", t0), nil); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, racers)
		start := make(chan struct{})
		for g := range racers {
			wg.Go(func() {
				<-start
				_, errs[g] = s.TransitionJob(ctx, id, []job.State{job.Created},
					jobs.Transition{State: job.DownloadSubmitted, Time: t0.Add(time.Second)}, jobs.JobUpdate{})
			})
		}
		close(start)
		wg.Wait()
		wins := 0
		for _, err := range errs {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, jobs.ErrConflict):
				t.Fatalf("round %d: unexpected error %v", r, err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d winners, want 1", r, wins)
		}
		j, err := s.GetJob(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(j.Transitions) != 2 {
			t.Fatalf("round %d: %d transitions, want 2", r, len(j.Transitions))
		}
	}
}

func TestTransitionSubJob(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	subs := []jobs.SubJob{
		{SubID: 0, State: job.DownloadSubmitted, UpdateTime: t0, Transitions: []jobs.Transition{{State: job.DownloadSubmitted, Time: t0}}},
		{SubID: 1, State: job.DownloadSubmitted, UpdateTime: t0},
	}
	if err := s.CreateJob(ctx, newJob("j1", "alice", "kbase", t0), subs); err != nil {
		t.Fatal(err)
	}
	running := []job.State{job.DownloadSubmitted, job.JobSubmitting}
	at := t0.Add(time.Minute)
	cases := []struct {
		name    string
		sub     int
		from    []job.State
		to      job.State
		u       jobs.SubJobUpdate
		seq     jobs.Seq
		wantErr error
		// wantSeq is the attempt/last_seq recorded after a success.
		wantSeq jobs.Seq
	}{
		{"first event", 0, running, job.JobSubmitting, jobs.SubJobUpdate{}, jobs.Seq{Attempt: "A", Seq: 1}, nil, jobs.Seq{Attempt: "A", Seq: 1}},
		{"same seq again", 0, running, job.JobSubmitting, jobs.SubJobUpdate{}, jobs.Seq{Attempt: "A", Seq: 1}, jobs.ErrConflict, jobs.Seq{}},
		{"older seq", 0, running, job.JobSubmitting, jobs.SubJobUpdate{}, jobs.Seq{Attempt: "A", Seq: 0}, jobs.ErrConflict, jobs.Seq{}},
		{"next seq", 0, running, job.JobSubmitting, jobs.SubJobUpdate{}, jobs.Seq{Attempt: "A", Seq: 5}, nil, jobs.Seq{Attempt: "A", Seq: 5}},
		// One container, one agent attempt: another attempt cannot take over a container
		// whose events come from A.
		{"another attempt", 0, running, job.JobSubmitting, jobs.SubJobUpdate{}, jobs.Seq{Attempt: "B", Seq: 1}, jobs.ErrConflict, jobs.Seq{}},
		{"wrong state", 0, []job.State{job.Created}, job.DownloadSubmitted, jobs.SubJobUpdate{}, jobs.Seq{Attempt: "A", Seq: 6}, jobs.ErrConflict, jobs.Seq{}},
		{"no seq (coordinator side)", 0, running, job.JobSubmitted, jobs.SubJobUpdate{}, jobs.Seq{}, nil, jobs.Seq{Attempt: "A", Seq: 5}},
		{"with exit code and outputs", 0, []job.State{job.JobSubmitted}, job.UploadSubmitting,
			jobs.SubJobUpdate{ExitCode: ptr(3), Outputs: []jobs.Output{{File: "o", CRC64NVME: "c"}}, Error: "e", AdminError: "ae", Traceback: "tb"},
			jobs.Seq{Attempt: "A", Seq: 6}, nil, jobs.Seq{Attempt: "A", Seq: 6}},
		{"other sub-job independent", 1, running, job.JobSubmitting, jobs.SubJobUpdate{}, jobs.Seq{Attempt: "A", Seq: 1}, nil, jobs.Seq{Attempt: "A", Seq: 1}},
		{"missing sub-job", 7, running, job.JobSubmitting, jobs.SubJobUpdate{}, jobs.Seq{Attempt: "A", Seq: 1}, jobs.ErrNotFound, jobs.Seq{}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, err := s.GetSubJobs(ctx, "j1")
			if err != nil {
				t.Fatal(err)
			}
			tt := at.Add(time.Duration(i) * time.Second)
			got, err := s.TransitionSubJob(ctx, "j1", c.sub, c.from, jobs.Transition{State: c.to, Time: tt}, c.u, c.seq)
			isErr(t, err, c.wantErr)
			if c.wantErr != nil {
				after, err := s.GetSubJobs(ctx, "j1")
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(before, after) {
					t.Fatalf("a refused transition changed the sub-jobs:\n%+v\n%+v", before, after)
				}
				return
			}
			ms := tt.Truncate(time.Millisecond)
			if got.State != c.to || !got.UpdateTime.Equal(ms) || got.SubID != c.sub || got.JobID != "j1" {
				t.Fatalf("sub-job after transition: %+v", got)
			}
			last := got.Transitions[len(got.Transitions)-1]
			if last != (jobs.Transition{State: c.to, Time: ms}) {
				t.Fatalf("last transition %+v", last)
			}
			if got.Attempt != c.wantSeq.Attempt || got.LastSeq != c.wantSeq.Seq {
				t.Fatalf("attempt/last_seq = %s/%d, want %s/%d", got.Attempt, got.LastSeq, c.wantSeq.Attempt, c.wantSeq.Seq)
			}
			if c.seq.Attempt != "" && !got.LastSeen.Equal(ms) {
				t.Fatalf("last_seen = %v, want %v", got.LastSeen, ms)
			}
			if c.u.ExitCode != nil && (got.ExitCode == nil || *got.ExitCode != *c.u.ExitCode ||
				!reflect.DeepEqual(got.Outputs, c.u.Outputs) || got.Error != c.u.Error ||
				got.AdminError != c.u.AdminError || got.Traceback != c.u.Traceback) {
				t.Fatalf("update fields not set: %+v", got)
			}
		})
	}
}

func TestTouchSubJob(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	subs := []jobs.SubJob{{SubID: 0, State: job.DownloadSubmitted}, {SubID: 1, State: job.DownloadSubmitted}}
	if err := s.CreateJob(ctx, newJob("j1", "alice", "kbase", t0), subs); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TransitionSubJob(ctx, "j1", 0, []job.State{job.DownloadSubmitted}, jobs.Transition{State: job.JobSubmitting, Time: t0},
		jobs.SubJobUpdate{}, jobs.Seq{Attempt: "A", Seq: 1}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		sub      int
		attempt  string
		at       time.Time
		wantErr  error
		wantSeen time.Time
	}{
		{"current attempt", 0, "A", t0.Add(time.Minute), nil, t0.Add(time.Minute)},
		{"never backwards", 0, "A", t0.Add(time.Second), nil, t0.Add(time.Minute)},
		{"other attempt", 0, "B", t0.Add(time.Hour), jobs.ErrConflict, t0.Add(time.Minute)},
		{"no attempt given", 0, "", t0.Add(2 * time.Minute), nil, t0.Add(2 * time.Minute)},
		{"sub-job without attempt", 1, "A", t0.Add(time.Minute), nil, t0.Add(time.Minute)},
		{"missing", 9, "A", t0, jobs.ErrNotFound, time.Time{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			isErr(t, s.TouchSubJob(ctx, "j1", c.sub, c.attempt, c.at), c.wantErr)
			if c.wantSeen.IsZero() {
				return
			}
			got, err := s.GetSubJobs(ctx, "j1")
			if err != nil {
				t.Fatal(err)
			}
			if want := c.wantSeen.Truncate(time.Millisecond); !got[c.sub].LastSeen.Equal(want) {
				t.Fatalf("last_seen = %v, want %v", got[c.sub].LastSeen, want)
			}
		})
	}
}

func TestUnsentTransitionsAndMarkNotified(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	// j1: created (t0) and download_submitted (t0+1m); j2: created (t0+2m), already sent.
	if err := s.CreateJob(ctx, newJob("j1", "alice", "kbase", t0), nil); err != nil {
		t.Fatal(err)
	}
	j1, err := s.TransitionJob(ctx, "j1", []job.State{job.Created},
		jobs.Transition{State: job.DownloadSubmitted, Time: t0.Add(time.Minute), TransID: "j1-t1"}, jobs.JobUpdate{})
	if err != nil {
		t.Fatal(err)
	}
	j2 := newJob("j2", "bob", "kbase", t0.Add(2*time.Minute))
	j2.Transitions[0].NotifSent = true
	if err := s.CreateJob(ctx, j2, nil); err != nil {
		t.Fatal(err)
	}

	unsent := func(t *testing.T, olderThan time.Time) map[string][]string {
		t.Helper()
		got, err := s.UnsentTransitions(ctx, olderThan, 0)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]string{}
		for _, j := range got {
			for _, tr := range j.Transitions {
				if tr.NotifSent {
					t.Fatalf("a sent transition was returned: %+v", tr)
				}
				out[j.ID] = append(out[j.ID], tr.TransID)
			}
		}
		return out
	}
	steps := []struct {
		name      string
		mark      [2]string // job, trans_id to mark first ("" = none)
		markErr   error
		olderThan time.Time
		want      map[string][]string
	}{
		{"all old enough", [2]string{}, nil, t0.Add(time.Hour), map[string][]string{"j1": {"j1-t0", "j1-t1"}}},
		{"older than excludes recent", [2]string{}, nil, t0.Add(30 * time.Second), map[string][]string{"j1": {"j1-t0"}}},
		{"nothing old enough", [2]string{}, nil, t0.Truncate(time.Millisecond), map[string][]string{}},
		{"mark the first", [2]string{"j1", "j1-t0"}, nil, t0.Add(time.Hour), map[string][]string{"j1": {"j1-t1"}}},
		{"mark again is harmless", [2]string{"j1", "j1-t0"}, nil, t0.Add(time.Hour), map[string][]string{"j1": {"j1-t1"}}},
		{"mark unknown transition", [2]string{"j1", "nope"}, jobs.ErrNotFound, t0.Add(time.Hour), map[string][]string{"j1": {"j1-t1"}}},
		{"mark unknown job", [2]string{"nope", "j1-t1"}, jobs.ErrNotFound, t0.Add(time.Hour), map[string][]string{"j1": {"j1-t1"}}},
		{"mark the last", [2]string{"j1", j1.Transitions[1].TransID}, nil, t0.Add(time.Hour), map[string][]string{}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.mark[0] != "" {
				isErr(t, s.MarkNotified(ctx, st.mark[0], st.mark[1]), st.markErr)
			}
			if got := unsent(t, st.olderThan); !reflect.DeepEqual(got, st.want) {
				t.Fatalf("unsent = %v, want %v", got, st.want)
			}
		})
	}
	got, err := s.GetJob(ctx, "j1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range got.Transitions {
		if !tr.NotifSent {
			t.Fatalf("transition %s not marked", tr.TransID)
		}
	}
}

func TestJobsInStateAndListJobs(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	// Created in an order that differs from their update times.
	fixtures := []struct {
		id, user, cluster string
		at                time.Time
		to                job.State
	}{
		{"a", "alice", "kbase", t0.Add(3 * time.Minute), ""},
		{"b", "bob", "kbase", t0.Add(1 * time.Minute), job.DownloadSubmitted},
		{"c", "alice", "perlmutter", t0.Add(2 * time.Minute), ""},
		{"d", "alice", "kbase", t0.Add(4 * time.Minute), job.DownloadSubmitted},
		{"e", "carol", "kbase", t0, ""},
	}
	for _, f := range fixtures {
		j := newJob(f.id, f.user, f.cluster, f.at)
		j.Outputs = []jobs.Output{{File: "o", CRC64NVME: "c"}}
		switch f.id {
		case "c":
			j.Image.Name = "ghcr.io/kbase/other"
		case "d":
			j.Image.Digest = "sha256:def"
			j.Image.Tag = "2.0"
		}
		if err := s.CreateJob(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
		if f.to != "" {
			if _, err := s.TransitionJob(ctx, f.id, []job.State{job.Created}, jobs.Transition{State: f.to, Time: f.at}, jobs.JobUpdate{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ids := func(js []*jobs.Job) []string {
		out := []string{}
		for _, j := range js {
			out = append(out, j.ID)
		}
		return out
	}

	t.Run("jobs in state", func(t *testing.T) {
		for _, c := range []struct {
			state job.State
			limit int
			want  []string
		}{
			{job.Created, 0, []string{"e", "c", "a"}},
			{job.Created, 2, []string{"e", "c"}},
			{job.DownloadSubmitted, 0, []string{"b", "d"}},
			{job.Complete, 0, []string{}},
		} {
			got, err := s.JobsInState(ctx, c.state, c.limit)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ids(got), c.want) {
				t.Errorf("JobsInState(%s, %d) = %v, want %v", c.state, c.limit, ids(got), c.want)
			}
		}
	})

	cases := []struct {
		name string
		f    jobs.ListFilter
		want []string
	}{
		{"all newest first", jobs.ListFilter{}, []string{"d", "a", "c", "b", "e"}},
		{"user", jobs.ListFilter{User: "alice"}, []string{"d", "a", "c"}},
		{"cluster", jobs.ListFilter{Cluster: "perlmutter"}, []string{"c"}},
		{"state", jobs.ListFilter{State: job.DownloadSubmitted}, []string{"d", "b"}},
		{"user and state", jobs.ListFilter{User: "alice", State: job.Created}, []string{"a", "c"}},
		{"user and cluster", jobs.ListFilter{User: "alice", Cluster: "kbase"}, []string{"d", "a"}},
		{"after inclusive", jobs.ListFilter{After: t0.Add(2 * time.Minute)}, []string{"d", "a", "c"}},
		{"before exclusive", jobs.ListFilter{Before: t0.Add(2 * time.Minute)}, []string{"b", "e"}},
		{"window", jobs.ListFilter{After: t0.Add(time.Minute), Before: t0.Add(3 * time.Minute)}, []string{"c", "b"}},
		{"limit", jobs.ListFilter{Limit: 2}, []string{"d", "a"}},
		{"image name", jobs.ListFilter{ImageName: "ghcr.io/kbase/tool"}, []string{"d", "a", "b", "e"}},
		{"image name and digest", jobs.ListFilter{ImageName: "ghcr.io/kbase/tool", ImageDigest: "sha256:def"}, []string{"d"}},
		{"image name and tag", jobs.ListFilter{ImageName: "ghcr.io/kbase/tool", ImageTag: "2.0"}, []string{"d"}},
		{"user and image", jobs.ListFilter{User: "alice", ImageName: "ghcr.io/kbase/other"}, []string{"c"}},
		{"image and window", jobs.ListFilter{ImageName: "ghcr.io/kbase/tool", Before: t0.Add(4 * time.Minute)}, []string{"a", "b", "e"}},
		{"no match", jobs.ListFilter{User: "nobody"}, []string{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := s.ListJobs(ctx, c.f)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ids(got), c.want) {
				t.Fatalf("ListJobs = %v, want %v", ids(got), c.want)
			}
			for _, j := range got {
				if j.Outputs != nil || j.Input.InputFiles != nil {
					t.Fatalf("job %s carries outputs or input files: %+v %+v", j.ID, j.Outputs, j.Input.InputFiles)
				}
				if j.Input.Cluster == "" || len(j.Input.Params.Args) == 0 {
					t.Fatalf("job %s lost the rest of its input: %+v", j.ID, j.Input)
				}
			}
		})
	}
}
