package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
)

// jobDoc is the stored form of a job: jobs.Job with job_input as a raw sub-document. The
// JobInput's JSON form is its storage form (it holds custom JSON types, args.Arg and
// args.Environment, and no bson tags), so it is converted through extended JSON. The outer
// Input field shadows the inlined Job.Input (shallower field wins).
//
// Its _id is the job ID (the Python service let MongoDB pick an ObjectID): every lookup of a job
// is then a lookup by _id, which stays one index search however many jobs are stored, on
// MongoDB and on the embedded FerretDB alike (which uses no other index). The id field stays,
// as the Python service and the id_1 index have it.
type jobDoc struct {
	// Key is written as the job ID; it reads as whatever is stored (an ObjectID before the
	// migration, see migrate.go).
	Key      any `bson:"_id"`
	jobs.Job `bson:",inline"`
	Input    bson.Raw `bson:"job_input"`
	// Accounted is set once the reconciler recorded the job's accounting (not in the Job
	// model: only the store and its work documents use it).
	Accounted bool `bson:"_accounted,omitempty"`
	// ListVersion counts the job's updates: every update increments it, and the job list's
	// copy of the job is replaced only by a newer one (joblist.go).
	ListVersion int64 `bson:"_lv,omitempty"`
}

// subJobDoc is the stored form of a sub-job: its _id is subKey(job ID, sub ID).
type subJobDoc struct {
	Key         string `bson:"_id"`
	jobs.SubJob `bson:",inline"`
}

// subKey is the _id of sub-job sub of job id. Job IDs never contain '/'.
func subKey(id string, sub int) string { return id + "/" + strconv.Itoa(sub) }

// encodeInput converts a JobInput to its BSON sub-document. Object keys cannot start with '$'
// (extended JSON would read them as type wrappers): the only free-form keys are environment
// variable names, which jobinput restricts to ^[A-Z_][A-Z0-9_]*$.
func encodeInput(in *jobinput.JobInput) (bson.Raw, error) {
	js, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("encode job input: %w", err)
	}
	var d bson.D
	if err := bson.UnmarshalExtJSON(js, false, &d); err != nil {
		return nil, fmt.Errorf("encode job input: %w", err)
	}
	// JSON writes 60.0 as 60, which would come back as an int32: runtime is float seconds.
	for i := range d {
		if d[i].Key == "runtime" {
			d[i].Value = in.RuntimeSeconds
		}
	}
	raw, err := bson.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode job input: %w", err)
	}
	return raw, nil
}

func decodeInput(raw bson.Raw) (jobinput.JobInput, error) {
	var in jobinput.JobInput
	if len(raw) == 0 {
		return in, nil
	}
	js, err := bson.MarshalExtJSON(raw, false, false)
	if err != nil {
		return in, fmt.Errorf("decode job input: %w", err)
	}
	if err := json.Unmarshal(js, &in); err != nil {
		return in, fmt.Errorf("decode job input: %w", err)
	}
	return in, nil
}

func (d *jobDoc) toJob() (*jobs.Job, error) {
	in, err := decodeInput(d.Input)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", d.ID, err)
	}
	j := d.Job
	j.Input = in
	return &j, nil
}

// normalizeJob makes j storable as is: times in UTC at millisecond precision, a trans_id on
// every transition, transition_times an array (so transitions can $push onto it) and
// admin_meta an object (so "$set admin_meta.k" works later).
func normalizeJob(j *jobs.Job) {
	if j.Transitions == nil {
		j.Transitions = []jobs.Transition{}
	}
	j.UpdateTime = msTime(j.UpdateTime)
	j.Image.RegisteredOn = msTime(j.Image.RegisteredOn)
	for i := range j.Transitions {
		j.Transitions[i].Time = msTime(j.Transitions[i].Time)
		if j.Transitions[i].TransID == "" {
			j.Transitions[i].TransID = uuid.NewString()
		}
	}
	if j.AdminMeta == nil {
		j.AdminMeta = map[string]any{}
	}
}

func normalizeSubJob(s *jobs.SubJob) {
	if s.Transitions == nil {
		s.Transitions = []jobs.Transition{}
	}
	s.UpdateTime = msTime(s.UpdateTime)
	s.LastSeen = msTime(s.LastSeen)
	for i := range s.Transitions {
		s.Transitions[i].Time = msTime(s.Transitions[i].Time)
	}
}

// CreateJob inserts the job and its sub-jobs. It normalises j and subs in place (see
// normalizeJob) so the caller holds exactly what is stored. The sub-jobs are written first:
// without transactions a failure can leave orphans, and orphan sub-jobs are inert while a job
// without sub-jobs would be picked up by the submitter. Then its work document (work.go),
// before the job, so that a job with work to do always has one; a job created already ended
// (a history imported or seeded) waits for no accounting. A job ID that exists is ErrConflict.
func (s *Store) CreateJob(ctx context.Context, j *jobs.Job, subs []jobs.SubJob) error {
	normalizeJob(j)
	in, err := encodeInput(&j.Input)
	if err != nil {
		return fmt.Errorf("create job %s: %w", j.ID, err)
	}
	if len(subs) > 0 {
		docs := make([]any, len(subs))
		for i := range subs {
			subs[i].JobID = j.ID
			normalizeSubJob(&subs[i])
			docs[i] = &subJobDoc{Key: subKey(j.ID, subs[i].SubID), SubJob: subs[i]}
		}
		if _, err := s.subjobs.InsertMany(ctx, docs); err != nil {
			if isDuplicateKey(err) {
				return fmt.Errorf("create job %s: sub-jobs exist: %w", j.ID, jobs.ErrConflict)
			}
			return fmt.Errorf("create job %s: insert sub-jobs: %w", j.ID, err)
		}
	}
	undo := func() {
		// Best effort, and only what was inserted above (a job that exists keeps its own):
		// orphans are inert anyway, and the insert error is the one to report.
		ctx := context.WithoutCancel(ctx)
		for i := range subs {
			_, _ = s.subjobs.DeleteOne(ctx, bson.D{{Key: "_id", Value: subKey(j.ID, subs[i].SubID)}})
		}
	}
	// The due queue's copy, then the work document, then the job (work.go): a crash leaves
	// orphans the due queue's readers delete, never a job without its copies.
	w, pending := workOf(j, j.State.Terminal())
	w.Created = jobs.Now()
	mine := bson.D{{Key: "_id", Value: j.ID}, {Key: "v", Value: w.V}, {Key: "created", Value: w.Created}}
	for _, c := range []struct {
		coll  *mongo.Collection
		doc   workDoc
		write bool
		what  string
	}{{s.due, w, pending && due(w), "due queue document"}, {s.work, workCopy(w), pending, "work document"}} {
		if !c.write {
			continue
		}
		if _, err := c.coll.InsertOne(ctx, &c.doc); err != nil {
			undo()
			if isDuplicateKey(err) {
				return fmt.Errorf("create job %s: job exists: %w", j.ID, jobs.ErrConflict)
			}
			return fmt.Errorf("create job %s: insert %s: %w", j.ID, c.what, err)
		}
		undoBefore := undo
		undo = func() {
			undoBefore()
			// Only the document inserted here (its created time): another writer's stays.
			_, _ = c.coll.DeleteOne(context.WithoutCancel(ctx), mine)
		}
	}
	doc := &jobDoc{Key: j.ID, Job: *j, Input: in, ListVersion: 1}
	if _, err := s.jobs.InsertOne(ctx, doc); err != nil {
		undo()
		if isDuplicateKey(err) {
			return fmt.Errorf("create job %s: job exists: %w", j.ID, jobs.ErrConflict)
		}
		return fmt.Errorf("create job %s: %w", j.ID, err)
	}
	if len(subs) == j.Input.NumContainers {
		s.containers.put(j)
	}
	// A crash before the list is written leaves the job out of the job list until its next
	// transition (every job created unfinished has one: the submitter's).
	s.listAfter(ctx, doc, time.Time{})
	if j.State.Terminal() {
		if err := s.syncClean(ctx, j); err != nil {
			s.log.WarnContext(ctx, "job created ended, not queued for the cleaner", "job_id", j.ID, "error", err.Error())
		}
		s.countTerminal(ctx, j.State, 1)
	}
	return nil
}

// GetJob returns the job, or ErrNotFound.
func (s *Store) GetJob(ctx context.Context, id string) (*jobs.Job, error) {
	var d jobDoc
	err := s.jobs.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fmt.Errorf("get job %s: %w", id, jobs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	j, err := d.toJob()
	s.containers.put(j)
	return j, err
}

// GetSubJob returns sub-job (id, sub) in one point read, or ErrNotFound.
func (s *Store) GetSubJob(ctx context.Context, id string, sub int) (*jobs.SubJob, error) {
	var sj jobs.SubJob
	err := s.subjobs.FindOne(ctx, bson.D{{Key: "_id", Value: subKey(id, sub)}}).Decode(&sj)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fmt.Errorf("get sub-job %s/%d: %w", id, sub, jobs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get sub-job %s/%d: %w", id, sub, err)
	}
	return &sj, nil
}

// GetSubJobs returns the job's sub-jobs sorted by SubID (empty if none).
//
// The sub-jobs are read by _id, 0, 1, 2, ... until one is missing (a job's sub-jobs are
// numbered from 0 without gaps): a point read each, on MongoDB and on the embedded FerretDB
// alike. One query on the id_1_sub_id_1 index would be one round trip on MongoDB, but
// FerretDB would answer it by reading every sub-job ever stored; a job has a handful of
// containers, so both servers run this one path. When this store has read or written the
// job, it knows its number of containers (which never changes) and stops after the last
// one, without reading the missing one after it (containerCounts).
func (s *Store) GetSubJobs(ctx context.Context, id string) ([]jobs.SubJob, error) {
	subs := []jobs.SubJob{}
	known := s.containers.get(id)
	for n := 0; known <= 0 || n < known; n++ {
		var sj jobs.SubJob
		err := s.subjobs.FindOne(ctx, bson.D{{Key: "_id", Value: subKey(id, n)}}).Decode(&sj)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return subs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("get sub-jobs %s: %w", id, err)
		}
		subs = append(subs, sj)
	}
	return subs, nil
}

// containerCounts remembers the number of containers of the jobs a store read or wrote (it
// never changes), so that GetSubJobs reads no sub-job past the last. It is emptied when it
// grows past containersMax.
type containerCounts struct {
	mu sync.Mutex
	m  map[string]int
}

const containersMax = 10_000

func (c *containerCounts) put(j *jobs.Job) {
	if j == nil || j.Input.NumContainers <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= containersMax {
		c.m = map[string]int{}
	}
	c.m[j.ID] = j.Input.NumContainers
}

// get returns the number of containers of job id, 0 when unknown.
func (c *containerCounts) get(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[id]
}

func jobUpdateFields(u jobs.JobUpdate) bson.D {
	var set bson.D
	add := func(k string, v any) { set = append(set, bson.E{Key: k, Value: v}) }
	if u.Launch != nil {
		add("launch", u.Launch)
	}
	if u.Outputs != nil {
		add("outputs", u.Outputs)
	}
	if u.OutputsManifests != nil {
		add("outputs_manifests", u.OutputsManifests)
	}
	if u.OutputFileCount != nil {
		add("output_file_count", *u.OutputFileCount)
	}
	if u.Error != "" {
		add("error", u.Error)
	}
	if u.AdminError != "" {
		add("admin_error", u.AdminError)
	}
	if u.Traceback != "" {
		add("traceback", u.Traceback)
	}
	if u.LogPath != "" {
		add("logpath", u.LogPath)
	}
	if u.CPUHours != nil {
		add("cpu_hours", *u.CPUHours)
	}
	if u.CPUFactor != nil {
		add("cpu_factor", *u.CPUFactor)
	}
	if u.MaxMemory != nil {
		add("max_memory", *u.MaxMemory)
	}
	return set
}

// TransitionJob moves job id to t.State if its state is one of from, in one conditional
// FindOneAndUpdate. t.Time is truncated to the millisecond (UTC); an empty t.TransID gets a
// new UUID. Unlike the Python service there is no "_update_time <= t.Time" condition: the
// state condition is what makes the update safe, and the time clause turned clock skew into
// errors.
func (s *Store) TransitionJob(ctx context.Context, id string, from []job.State, t jobs.Transition, u jobs.JobUpdate) (*jobs.Job, error) {
	t.Time = msTime(t.Time)
	from = nonNil(from)
	if t.TransID == "" {
		t.TransID = uuid.NewString()
	}
	set := append(bson.D{
		{Key: "state", Value: t.State},
		{Key: "_update_time", Value: t.Time},
	}, jobUpdateFields(u)...)
	filter := bson.D{{Key: "_id", Value: id}, {Key: "state", Value: bson.D{{Key: "$in", Value: from}}}}
	update := bson.D{
		{Key: "$set", Value: set},
		{Key: "$push", Value: bson.D{{Key: "transition_times", Value: t}}},
		incListVersion(),
	}
	var d jobDoc
	err := s.jobs.FindOneAndUpdate(ctx, filter, update,
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, s.missOrConflict(ctx, s.jobs, bson.D{{Key: "_id", Value: id}},
			fmt.Sprintf("transition job %s to %s", id, t.State), from)
	}
	if err != nil {
		return nil, fmt.Errorf("transition job %s to %s: %w", id, t.State, err)
	}
	j, err := d.toJob()
	if err != nil {
		return nil, err
	}
	s.containers.put(j)
	// The list first: a crash before the work document is synced has the next pass repair
	// both (work.go).
	s.listAfter(ctx, &d, prevTime(j))
	s.afterTransition(ctx, j)
	return j, nil
}

// incListVersion is the update clause every update of a job carries (joblist.go).
func incListVersion() bson.E {
	return bson.E{Key: "$inc", Value: bson.D{{Key: listVersionField, Value: int64(1)}}}
}

// nonNil makes a nil "from" an empty array: $in needs an array, and an empty one matches
// nothing (a conflict), which is what no allowed state means.
func nonNil(from []job.State) []job.State {
	if from == nil {
		return []job.State{}
	}
	return from
}

// missOrConflict tells why a conditional update on the document selected by key matched
// nothing: ErrNotFound when there is no such document, else ErrConflict naming its state.
func (s *Store) missOrConflict(ctx context.Context, coll *mongo.Collection, key bson.D, op string, from []job.State) error {
	var cur struct {
		State job.State `bson:"state"`
	}
	err := coll.FindOne(ctx, key, options.FindOne().SetProjection(bson.D{{Key: "state", Value: 1}})).Decode(&cur)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return fmt.Errorf("%s: %w", op, jobs.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if from == nil {
		return fmt.Errorf("%s: %w", op, jobs.ErrConflict)
	}
	if slices.Contains(from, cur.State) {
		// The state matches now: either the event's other condition failed (a replayed or
		// stale sub-job event) or the state moved away and back between the two reads.
		return fmt.Errorf("%s: event already applied, stale, or raced: %w", op, jobs.ErrConflict)
	}
	return fmt.Errorf("%s: state is %s, expected one of %v: %w", op, cur.State, from, jobs.ErrConflict)
}

// TransitionSubJob moves sub-job (id, sub) to t.State if its state is one of from and, when
// seq.Attempt is set, the event is new and its attempt's to give: a higher sequence number of
// the attempt that started the container, or the first event of any attempt when none has
// reported yet. It then records Attempt, LastSeq and LastSeen = t.Time. All in one
// conditional FindOneAndUpdate. A replayed or stale event, or one of another attempt, is
// ErrConflict.
func (s *Store) TransitionSubJob(ctx context.Context, id string, sub int, from []job.State, t jobs.Transition, u jobs.SubJobUpdate, seq jobs.Seq) (*jobs.SubJob, error) {
	t.Time = msTime(t.Time)
	from = nonNil(from)
	op := fmt.Sprintf("transition sub-job %s/%d to %s", id, sub, t.State)
	key := bson.D{{Key: "_id", Value: subKey(id, sub)}}
	filter := append(bson.D{}, key...)
	filter = append(filter, bson.E{Key: "state", Value: bson.D{{Key: "$in", Value: from}}})
	set := bson.D{{Key: "state", Value: t.State}, {Key: "_update_time", Value: t.Time}}
	if seq.Attempt != "" {
		// The attempt that started the container (a newer event of it), or the first one to
		// report: one container is moved by one agent attempt only.
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "attempt", Value: seq.Attempt}, {Key: "last_seq", Value: bson.D{{Key: "$lt", Value: seq.Seq}}}},
			bson.D{{Key: "attempt", Value: bson.D{{Key: "$exists", Value: false}}}},
			bson.D{{Key: "attempt", Value: ""}},
		}})
		set = append(set,
			bson.E{Key: "attempt", Value: seq.Attempt},
			bson.E{Key: "last_seq", Value: seq.Seq},
			bson.E{Key: "last_seen", Value: t.Time})
	}
	if u.ExitCode != nil {
		set = append(set, bson.E{Key: "exit_code", Value: *u.ExitCode})
	}
	if u.Outputs != nil {
		set = append(set, bson.E{Key: "outputs", Value: u.Outputs})
	}
	if u.OutputsManifest != nil {
		set = append(set, bson.E{Key: "outputs_manifest", Value: u.OutputsManifest})
	}
	if u.Error != "" {
		set = append(set, bson.E{Key: "error", Value: u.Error})
	}
	if u.AdminError != "" {
		set = append(set, bson.E{Key: "admin_error", Value: u.AdminError})
	}
	if u.Traceback != "" {
		set = append(set, bson.E{Key: "traceback", Value: u.Traceback})
	}
	// Sub-job transitions carry neither trans_id nor notif_sent (they are never notified).
	push := bson.D{{Key: "state", Value: t.State}, {Key: "time", Value: t.Time}}
	update := bson.D{
		{Key: "$set", Value: set},
		{Key: "$push", Value: bson.D{{Key: "transition_times", Value: push}}},
	}
	var out jobs.SubJob
	err := s.subjobs.FindOneAndUpdate(ctx, filter, update,
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&out)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, s.missOrConflict(ctx, s.subjobs, key, op, from)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return &out, nil
}

// TouchSubJob records that the agent of sub-job (id, sub) was seen at t; LastSeen never moves
// back. When attempt is set, only the agent of the sub-job's current attempt (or of a sub-job
// that has none yet) counts: another attempt's heartbeat is ErrConflict, so a zombie agent
// cannot keep a replaced container looking alive. A new attempt becomes current with its
// first event (TransitionSubJob).
func (s *Store) TouchSubJob(ctx context.Context, id string, sub int, attempt string, t time.Time) error {
	op := fmt.Sprintf("touch sub-job %s/%d", id, sub)
	key := bson.D{{Key: "_id", Value: subKey(id, sub)}}
	filter := append(bson.D{}, key...)
	if attempt != "" {
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "attempt", Value: attempt}},
			bson.D{{Key: "attempt", Value: bson.D{{Key: "$exists", Value: false}}}},
		}})
	}
	res, err := s.subjobs.UpdateOne(ctx, filter,
		bson.D{{Key: "$max", Value: bson.D{{Key: "last_seen", Value: msTime(t)}}}})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if res.MatchedCount == 0 {
		return s.missOrConflict(ctx, s.subjobs, key, op, nil)
	}
	return nil
}

// listProjection drops what list queries do not return: outputs and input files can be large.
func listProjection() bson.D {
	return bson.D{{Key: "outputs", Value: 0}, {Key: "job_input.input_files", Value: 0}}
}

// MarkNotified sets notif_sent on the transitions transIDs of job id, in one conditional
// update; ErrNotFound if the job or one of the transitions does not exist (the others are
// marked). Marking twice is harmless. Once no transition of the job waits, its due copy is
// synced, and its work document too when the job has ended (a running job's is the same
// marked or not: workCopy, work.go). The job list is not written: it shows no marks
// (joblist.go).
//
// Each element is updated by its index, with the filter requiring that index to still hold
// its trans_id: transitions are only ever appended, so the index of a trans_id never changes
// and the guard cannot miss. The indexes are those UnsentTransitions read (transPositions),
// or read again when it did not read them or the guard failed. MongoDB could do it without
// the indexes with arrayFilters or the positional operator ($), which FerretDB (the embedded
// stack) lacks; the update by index is one conditional update of one document on both, so
// both servers run this one path.
func (s *Store) MarkNotified(ctx context.Context, id string, transIDs ...string) error {
	op := fmt.Sprintf("mark job %s transitions %v notified", id, transIDs)
	if len(transIDs) == 0 {
		return nil
	}
	ids, cached := s.positions.take(id)
	for {
		if !cached {
			var d struct {
				Transitions []struct {
					TransID string `bson:"trans_id"`
				} `bson:"transition_times"`
			}
			err := s.jobs.FindOne(ctx, bson.D{{Key: "_id", Value: id}},
				options.FindOne().SetProjection(bson.D{{Key: "transition_times.trans_id", Value: 1}})).Decode(&d)
			if errors.Is(err, mongo.ErrNoDocuments) {
				return fmt.Errorf("%s: %w", op, jobs.ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
			ids = ids[:0]
			for _, t := range d.Transitions {
				ids = append(ids, t.TransID)
			}
		}
		filter := bson.D{{Key: "_id", Value: id}}
		set := bson.D{}
		missing := false
		for _, tid := range transIDs {
			idx := slices.Index(ids, tid)
			if idx < 0 {
				missing = true
				continue
			}
			elem := "transition_times." + strconv.Itoa(idx)
			filter = append(filter, bson.E{Key: elem + ".trans_id", Value: tid})
			set = append(set, bson.E{Key: elem + ".notif_sent", Value: true})
		}
		if missing && cached {
			cached = false // read before UnsentTransitions saw the transition: read again
			continue
		}
		if len(set) == 0 {
			return fmt.Errorf("%s: %w", op, jobs.ErrNotFound)
		}
		var after jobDoc
		err := s.jobs.FindOneAndUpdate(ctx, filter, bson.D{{Key: "$set", Value: set}}, findAndModifyAfter()).Decode(&after)
		if errors.Is(err, mongo.ErrNoDocuments) && cached {
			cached = false
			continue
		}
		if errors.Is(err, mongo.ErrNoDocuments) {
			return fmt.Errorf("%s: %w", op, jobs.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		j := after.Job
		if !slices.ContainsFunc(j.Transitions, func(t jobs.Transition) bool { return !t.NotifSent }) {
			if err := s.syncNotified(ctx, &j, after.Accounted); err != nil {
				s.log.WarnContext(ctx, "work document of a notified job not updated (the next pass repairs it)", "job_id", id, "error", err.Error())
			}
		}
		if missing {
			return fmt.Errorf("%s: %w", op, jobs.ErrNotFound)
		}
		return nil
	}
}

// transPositions remembers the trans_ids of the jobs UnsentTransitions returned, in their
// order, for MarkNotified (which guards every index it uses, so a stale entry costs a read,
// never a wrong mark). It is emptied when it grows past positionsMax.
type transPositions struct {
	mu sync.Mutex
	m  map[string][]string
}

const positionsMax = 10_000

func (p *transPositions) put(id string, ts []jobs.Transition) {
	ids := make([]string, len(ts))
	for i, t := range ts {
		ids[i] = t.TransID
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil || len(p.m) >= positionsMax {
		p.m = map[string][]string{}
	}
	p.m[id] = ids
}

// take returns and forgets the trans_ids remembered for job id.
func (p *transPositions) take(id string) ([]string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids, ok := p.m[id]
	delete(p.m, id)
	return ids, ok
}

// findAndModifyAfter returns the options of a findAndModify that returns the whole document
// after the update (the job list's copy is made from it; FerretDB also refuses projections
// in findAndModify).
func findAndModifyAfter() *options.FindOneAndUpdateOptionsBuilder {
	return options.FindOneAndUpdate().SetReturnDocument(options.After)
}

// workProjection is what workOf needs of a job.
func workProjection() bson.D {
	return bson.D{{Key: "id", Value: 1}, {Key: "state", Value: 1}, {Key: "_update_time", Value: 1},
		{Key: "transition_times", Value: 1}, {Key: "launch", Value: 1}, {Key: accountedField, Value: 1}}
}
