package store

// The job list: GET /jobs and /admin/jobs without reading the history.
//
// ListJobs pages through one user's jobs (or everyone's), newest change first, filtered by
// state, site and image. Asked of the jobs collection this needs a sorted index scan, which
// MongoDB has and the embedded FerretDB does not: FerretDB answers a query by reading only
// for a filter that is exactly {_id: <string>} and reads and decodes every document for any
// other, and decoding a job (nested documents) costs milliseconds, so a page of a 10,000-job
// history took 25 s there. So the store keeps a list index of its own, made of documents
// that are each read by _id alone and hold only flat string fields (cheap to decode on both
// servers), in two collections:
//
//   - job_views: {_id: <job id>, lv: <list version>, t: <_update_time>, b: <binary BSON>}, one
//     per job: the job as the list returns it (without outputs and input files), rewritten
//     whenever the job changes. lv is the job's _lv, which every update of a job increments.
//   - job_list: the index proper, per list key ("*" for every job, "u:<user>" for a user's)
//     a tree of time slots: a head {_id: "<key>|h", lo, hi} with the first and last slot of
//     the top level; directory documents {_id: "<key>|<level>|<slot>", c: {<child slot>:
//     true}} at levels 4 (32 days), 3 (a day), 2 (an hour) and 1 (a minute); and at level 0
//     (a second) the buckets {_id: "<key>|0|<slot>", e: {<job id>: "<lv>|<time ms>|<state>|
//     <site>|<image name>|<tag>|<digest>"}}.
//
// A bucket holds the jobs whose last change fell in its second, so its size is bounded by
// what a site changes in a second, not by how long it runs: every change of a job rewrites
// its bucket whole on the embedded FerretDB (which decodes and re-encodes the document, about
// 55 µs per entry), and minute buckets, which held a busy minute's every job, made each
// change cost up to tens of milliseconds there.
//
// A page walks the tree from the newest slot before the page's end down to the oldest after
// its start, reading only slots that hold something (directory flags), takes the bucket
// entries that pass the filter, newest first (ties by job ID, descending), and reads the view
// of each; the slots are read several at a time, a batch spanning directories (the buckets of
// several minutes in one round). So a page costs about one read per second of history it
// covers that holds a job of its list key (at most one per job it passes over) plus one per
// minute and one per job listed, however long the history, in rounds of reads that grow
// (2, 4, ... 32 at a time).
//
// A bucket entry holds what the filters and the order need (time, state, site, image) and the
// job's list version when it was written. A change that leaves those as they were (accounting,
// admin metadata, cleaning) rewrites the view only, and the entry keeps an older version
// (readers compare times, and versions only when the times differ). Notification marks change
// nothing the list shows (GET /jobs shows no trans_id or notif_sent) and write neither: the
// transitions in a listed job carry their marks as of the job's last other change.
//
// The job document stays the only truth; the list index is a copy written after each change,
// without transactions, kept sound by these rules:
//   - A writer writes the view first (conditional on its lv being older, so a slow writer never
//     overwrites a newer view), then the directory flags from the top down, then the bucket
//     entry, then removes the entry of the job's previous time if that was another bucket.
//     A flag never points at nothing that could matter: flags are never removed, and a bucket
//     whose entries left is read and found empty.
//   - A reader lists a job only when its view agrees with the entry (same time, and the view
//     matches the filter), so a stale entry (a crash between the writes, a race between two
//     writers) is never listed; an entry older than its view in the bucket where the view
//     belongs (a slow writer overwrote a newer one) is rewritten from the view on the spot.
//   - A crash between a job's change and its list write leaves the job's work document stale
//     too (afterTransition writes the list first), and the next periodic pass, which re-reads
//     every job with a work document, syncs both (work.go). Accounting, cleaning and admin
//     changes, which have no work-document pass behind them, write only the view, of fields
//     the entries do not hold, so a crash there leaves those fields one change old in the
//     list, never a job out of it.
//
// Databases written before the list index get it from the schema migration (migrate.go).

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
)

// Collection names of the list index.
const (
	collViews = "job_views"
	collList  = "job_list"
	// listVersionField is the job document's list version, incremented by every update.
	listVersionField = "_lv"
	// keyAll is the list key of every job; a user's key is userKey(user).
	keyAll = "*"
)

// slotWidths are the widths of the time slots of each level of the list tree, in
// milliseconds: a second (the buckets), a minute, an hour, a day, 32 days (the top).
var slotWidths = [...]int64{1_000, 60_000, 3_600_000, 86_400_000, 32 * 86_400_000}

const topLevel = len(slotWidths) - 1

func userKey(user string) string { return "u:" + strconv.Quote(user) }

// slotOf is the slot of level l holding time ms (floor division: times before 1970 work).
func slotOf(l int, ms int64) int64 {
	w := slotWidths[l]
	s := ms / w
	if ms%w != 0 && ms < 0 {
		s--
	}
	return s
}

func slotID(key string, l int, slot int64) string {
	return key + "|" + strconv.Itoa(l) + "|" + strconv.FormatInt(slot, 10)
}

func headID(key string) string { return key + "|h" }

// fieldKey makes a job ID usable as a field name: MongoDB reads '.' as nesting and a leading
// '$' as an operator. Job IDs are UUIDs; anything else is escaped reversibly.
func fieldKey(id string) string {
	if !strings.ContainsAny(id, ".$%") {
		return id
	}
	r := strings.NewReplacer("%", "%25", ".", "%2E", "$", "%24")
	return r.Replace(id)
}

func unfieldKey(k string) string {
	if !strings.Contains(k, "%") {
		return k
	}
	r := strings.NewReplacer("%2E", ".", "%24", "$", "%25", "%")
	return r.Replace(k)
}

// entry is a job's line in a bucket: what the filter needs without reading the view.
type entry struct {
	id                          string
	lv                          int64
	ms                          int64
	state                       job.State
	cluster, image, tag, digest string
	// slot is the bucket the entry was read from (not stored).
	slot int64
}

func (e entry) String() string {
	return strings.Join([]string{strconv.FormatInt(e.lv, 10), strconv.FormatInt(e.ms, 10), string(e.state),
		e.cluster, e.image, e.tag, e.digest}, "|")
}

func parseEntry(id, s string) (entry, bool) {
	p := strings.Split(s, "|")
	if len(p) != 7 {
		return entry{}, false
	}
	lv, err1 := strconv.ParseInt(p[0], 10, 64)
	ms, err2 := strconv.ParseInt(p[1], 10, 64)
	if err1 != nil || err2 != nil {
		return entry{}, false
	}
	return entry{id: id, lv: lv, ms: ms, state: job.State(p[2]), cluster: p[3], image: p[4], tag: p[5], digest: p[6]}, true
}

func entryOf(j *jobs.Job, lv int64) entry {
	return entry{id: j.ID, lv: lv, ms: j.UpdateTime.UnixMilli(), state: j.State, cluster: j.Input.Cluster,
		image: j.Image.Name, tag: j.Image.Tag, digest: j.Image.Digest}
}

// entryOfDoc is entryOf for a stored job document, whose job input is still raw.
func entryOfDoc(d *jobDoc) entry {
	e := entryOf(&d.Job, d.ListVersion)
	if len(d.Input) > 0 {
		e.cluster, _ = d.Input.Lookup("cluster").StringValueOK()
	}
	return e
}

// matches reports whether a job with entry e's fields passes f (its time included).
func (e entry) matches(f jobs.ListFilter) bool {
	switch {
	case f.Cluster != "" && e.cluster != f.Cluster,
		f.State != "" && e.state != f.State,
		f.ImageName != "" && e.image != f.ImageName,
		f.ImageName != "" && f.ImageTag != "" && e.tag != f.ImageTag,
		f.ImageName != "" && f.ImageDigest != "" && e.digest != f.ImageDigest,
		!f.After.IsZero() && e.ms < msTime(f.After).UnixMilli(),
		!f.Before.IsZero() && e.ms >= msTime(f.Before).UnixMilli():
		return false
	}
	return true
}

// viewDoc is a job's document in job_views.
type viewDoc struct {
	ID   string    `bson:"_id"`
	LV   int64     `bson:"lv"`
	Time time.Time `bson:"t"`
	Body []byte    `bson:"b"`
}

// viewOf returns the view document of job document d (as read or returned by an update).
func viewOf(d *jobDoc) (*viewDoc, error) {
	v := *d
	v.Key = d.ID
	v.Outputs = nil
	if len(d.Input) > 0 {
		var in bson.D
		if err := bson.Unmarshal(d.Input, &in); err != nil {
			return nil, fmt.Errorf("view of job %s: %w", d.ID, err)
		}
		in = slices.DeleteFunc(in, func(e bson.E) bool { return e.Key == "input_files" })
		raw, err := bson.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("view of job %s: %w", d.ID, err)
		}
		v.Input = raw
	}
	body, err := bson.Marshal(&v)
	if err != nil {
		return nil, fmt.Errorf("view of job %s: %w", d.ID, err)
	}
	return &viewDoc{ID: d.ID, LV: d.ListVersion, Time: msTime(d.UpdateTime), Body: body}, nil
}

func (v *viewDoc) job() (*jobs.Job, error) {
	var d jobDoc
	if err := bson.Unmarshal(v.Body, &d); err != nil {
		return nil, fmt.Errorf("read view of job %s: %w", v.ID, err)
	}
	return d.toJob()
}

// listCache remembers the directory flags and head bounds this process has written: flags are
// never removed, so one written stays written. It is emptied when it grows past listCacheMax.
type listCache struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

const listCacheMax = 100_000

func (c *listCache) has(k string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.seen[k]
	return ok
}

func (c *listCache) add(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil || len(c.seen) >= listCacheMax {
		c.seen = map[string]struct{}{}
	}
	c.seen[k] = struct{}{}
}

// syncList writes the list index of job document d as it is after a change (see above); prev
// is the job's update time before the change (zero if unknown or new).
func (s *Store) syncList(ctx context.Context, d *jobDoc, prev time.Time) error {
	v, err := viewOf(d)
	if err != nil {
		return err
	}
	if err := s.putView(ctx, v); err != nil {
		return err
	}
	j := &d.Job
	e := entryOfDoc(d)
	// The heads and directories of both lists first (each written once per process and slot),
	// then the buckets: each list's entry put, and taken out of the bucket of its previous
	// time, in this order, in one update command of up to four statements (a round trip
	// instead of four; a crash within it leaves a prefix written, as separate commands would).
	var buckets []mongo.WriteModel
	for _, key := range []string{keyAll, userKey(j.User)} {
		if err := s.putDirs(ctx, key, e); err != nil {
			return err
		}
		buckets = append(buckets, entryModel(key, e))
		if prev.IsZero() {
			continue
		}
		if old := slotOf(0, msTime(prev).UnixMilli()); old != slotOf(0, e.ms) {
			buckets = append(buckets, mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: slotID(key, 0, old)}}).
				SetUpdate(bson.D{{Key: "$unset", Value: bson.D{{Key: "e." + fieldKey(j.ID), Value: ""}}}}))
		}
	}
	if _, err := s.list.BulkWrite(ctx, buckets, options.BulkWrite().SetOrdered(true)); err != nil {
		return fmt.Errorf("list job %s: %w", j.ID, err)
	}
	return nil
}

// putView writes v unless a view of the same or a newer list version is stored. A job's first
// version (CreateJob's, or a job stored before list versions) is inserted: any view stored is
// the same or newer.
func (s *Store) putView(ctx context.Context, v *viewDoc) error {
	if v.LV <= 1 {
		if _, err := s.views.InsertOne(ctx, v); err != nil && !isDuplicateKey(err) {
			return fmt.Errorf("list job %s: %w", v.ID, err)
		}
		return nil
	}
	res, err := s.views.UpdateOne(ctx, bson.D{{Key: "_id", Value: v.ID}, {Key: "lv", Value: bson.D{{Key: "$lt", Value: v.LV}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "lv", Value: v.LV}, {Key: "t", Value: v.Time}, {Key: "b", Value: v.Body}}}})
	if err != nil {
		return fmt.Errorf("list job %s: %w", v.ID, err)
	}
	if res.MatchedCount > 0 {
		return nil
	}
	if _, err := s.views.InsertOne(ctx, v); err != nil && !isDuplicateKey(err) {
		// A duplicate is a view of the same or a newer version: it stays.
		return fmt.Errorf("list job %s: %w", v.ID, err)
	}
	return nil
}

// putEntry writes entry e under key: the head's bounds and the directory flags first, then the
// bucket's entry.
func (s *Store) putEntry(ctx context.Context, key string, e entry) error {
	if err := s.putDirs(ctx, key, e); err != nil {
		return err
	}
	m := entryModel(key, e)
	if _, err := s.list.UpdateOne(ctx, m.Filter, m.Update, options.UpdateOne().SetUpsert(true)); err != nil {
		return fmt.Errorf("list job %s: %w", e.id, err)
	}
	return nil
}

// entryModel is the upsert of entry e into its bucket under key.
func entryModel(key string, e entry) *mongo.UpdateOneModel {
	return mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: slotID(key, 0, slotOf(0, e.ms))}}).
		SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "e." + fieldKey(e.id), Value: e.String()}}}}).SetUpsert(true)
}

// putDirs writes what entry e under key needs above its bucket: the head's bounds and the
// directory flags of its slots (each once per process: listCache).
func (s *Store) putDirs(ctx context.Context, key string, e entry) error {
	top := slotOf(topLevel, e.ms)
	hk := headID(key) + "|" + strconv.FormatInt(top, 10)
	if !s.listCache.has(hk) {
		if _, err := s.list.UpdateOne(ctx, bson.D{{Key: "_id", Value: headID(key)}},
			bson.D{{Key: "$min", Value: bson.D{{Key: "lo", Value: top}}}, {Key: "$max", Value: bson.D{{Key: "hi", Value: top}}}},
			options.UpdateOne().SetUpsert(true)); err != nil {
			return fmt.Errorf("list job %s: %w", e.id, err)
		}
		s.listCache.add(hk)
	}
	for l := topLevel; l >= 1; l-- {
		id := slotID(key, l, slotOf(l, e.ms))
		child := strconv.FormatInt(slotOf(l-1, e.ms), 10)
		if s.listCache.has(id + "/" + child) {
			continue
		}
		if _, err := s.list.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "c." + child, Value: true}}}}, options.UpdateOne().SetUpsert(true)); err != nil {
			return fmt.Errorf("list job %s: %w", e.id, err)
		}
		s.listCache.add(id + "/" + child)
	}
	return nil
}

// listAfter keeps the list index in step with a change that left job document d; its errors
// are logged, not returned: the change happened (see above for who repairs).
func (s *Store) listAfter(ctx context.Context, d *jobDoc, prev time.Time) {
	if err := s.syncList(ctx, d, prev); err != nil {
		s.log.WarnContext(ctx, "job changed, its entry in the job list not updated (repaired by the next periodic pass)",
			"job_id", d.ID, "error", err.Error())
	}
}

// viewAfter keeps the job's view in step with a change that left job document d with the
// fields of its list entries as they were (see above: accounting, admin metadata, cleaning);
// like listAfter it logs its errors.
func (s *Store) viewAfter(ctx context.Context, d *jobDoc) {
	v, err := viewOf(d)
	if err == nil {
		err = s.putView(ctx, v)
	}
	if err != nil {
		s.log.WarnContext(ctx, "job changed, its copy in the job list not updated (the list shows it as of its previous change)",
			"job_id", d.ID, "error", err.Error())
	}
}

// prevTime is the update time of job j before its last transition (zero if it has one).
func prevTime(j *jobs.Job) time.Time {
	if n := len(j.Transitions); n >= 2 {
		return j.Transitions[n-2].Time
	}
	return time.Time{}
}

// ListJobs returns jobs matching f, newest UpdateTime first (ties by job ID, descending), up
// to f.Limit (default 1000), without outputs and input files. It reads the list index (see
// above): each job as it was at its last change of state, accounting, notification, cleaning
// or admin metadata.
//
// A job whose list index is being rewritten (its view already newer than the entry the walk
// read: a writer between its two writes) would be missing from that walk, so a walk that met
// one it did not list is walked again after a short pause (listRetries), a few times at most:
// a writer that crashed there leaves the job missing until the periodic pass repairs it.
func (s *Store) ListJobs(ctx context.Context, f jobs.ListFilter) ([]*jobs.Job, error) {
	for attempt := 0; ; attempt++ {
		w := &listWalk{s: s, f: f, limit: int(limitOrDefault(f.Limit)), out: []*jobs.Job{}}
		if err := w.run(ctx); err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		if attempt == len(listRetries) || !w.missesMoving() {
			return w.out, nil
		}
		if s.listRetryHook != nil {
			s.listRetryHook(attempt)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("list jobs: %w", ctx.Err())
		case <-time.After(listRetries[attempt]):
		}
	}
}

// listRetries are the pauses before the walks again of a list that met a job being rewritten.
var listRetries = []time.Duration{5 * time.Millisecond, 25 * time.Millisecond, 100 * time.Millisecond}

// listWalk is one ListJobs walk of the tree.
type listWalk struct {
	s      *Store
	f      jobs.ListFilter
	key    string
	lo, hi int64 // the time range, in ms, [lo, hi)
	limit  int
	out    []*jobs.Job
	// batch is the size of the next batch of reads of each level (walk).
	batch [topLevel + 1]int
	// moving holds the jobs met whose view is newer than the entry read (see ListJobs).
	mu     sync.Mutex
	moving []string
}

func (w *listWalk) done() bool { return len(w.out) >= w.limit }

// round marks a round of reads (for tests: Store.listRoundHook).
func (w *listWalk) round() {
	if w.s.listRoundHook != nil {
		w.s.listRoundHook()
	}
}

// missesMoving reports whether a job met while its list index was being rewritten is not
// listed.
func (w *listWalk) missesMoving() bool {
	for _, id := range w.moving {
		if !slices.ContainsFunc(w.out, func(j *jobs.Job) bool { return j.ID == id }) {
			return true
		}
	}
	return false
}

func (w *listWalk) run(ctx context.Context) error {
	w.key = keyAll
	if w.f.User != "" {
		w.key = userKey(w.f.User)
	}
	w.lo, w.hi = math.MinInt64, math.MaxInt64
	if !w.f.After.IsZero() {
		w.lo = msTime(w.f.After).UnixMilli()
	}
	if !w.f.Before.IsZero() {
		w.hi = msTime(w.f.Before).UnixMilli()
	}
	if w.lo >= w.hi {
		return nil
	}
	var head struct {
		Lo int64 `bson:"lo"`
		Hi int64 `bson:"hi"`
	}
	w.round()
	err := w.s.list.FindOne(ctx, bson.D{{Key: "_id", Value: headID(w.key)}}).Decode(&head)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil
	}
	if err != nil {
		return err
	}
	top, bottom := head.Hi, head.Lo
	if w.hi != math.MaxInt64 {
		top = min(top, slotOf(topLevel, w.hi-1))
	}
	if w.lo != math.MinInt64 {
		bottom = max(bottom, slotOf(topLevel, w.lo))
	}
	var slots []int64
	for slot := top; slot >= bottom; slot-- {
		slots = append(slots, slot)
	}
	return w.walk(ctx, topLevel, slots)
}

// walk lists what the slots of level l (newest first) hold, until the page is full: the
// buckets' entries (level 0), or what the directories' children hold. The slots are read
// several at a time, in batches that grow over the walk (2, 4, ... up to readers; four times
// that for buckets): a page that needs few reads few more than it takes, one that walks many
// seconds of a sparse list (a user's jobs among everyone's, a filter that takes one in seven)
// waits for a batch rather than for each read. The children of a batch of directories are
// walked as one list, so a batch of buckets spans minutes (and hours): a sparse page's
// round trips follow the reads it needs, not the minutes it spans.
func (w *listWalk) walk(ctx context.Context, l int, slots []int64) error {
	most := readers
	if l == 0 {
		most = 4 * readers // small documents, most of them one job's
	}
	for len(slots) > 0 && !w.done() {
		n := max(w.batch[l], 2)
		w.batch[l] = min(2*n, most)
		if w.f.Cluster == "" && w.f.State == "" && w.f.ImageName == "" {
			// Every flagged slot holds a job of the list (but for one moved meanwhile): more
			// than the page still needs would be read for nothing.
			n = min(n, w.limit-len(w.out))
		}
		batch := slots[:min(len(slots), n)]
		slots = slots[len(batch):]
		w.round()
		if l == 0 {
			bs, errs := readEach(batch, func(slot int64) (map[string]string, error) { return w.readBucket(ctx, slot) })
			if err := errors.Join(errs...); err != nil {
				return err
			}
			// The batch's entries, newest first, their views read together (a second's
			// bucket holds few).
			var es []entry
			for i, b := range bs {
				es = append(es, w.entries(batch[i], b)...)
			}
			if err := w.take(ctx, es); err != nil {
				return err
			}
			continue
		}
		cs, errs := readEach(batch, func(slot int64) ([]int64, error) { return w.children(ctx, l, slot) })
		if err := errors.Join(errs...); err != nil {
			return err
		}
		if err := w.walk(ctx, l-1, slices.Concat(cs...)); err != nil {
			return err
		}
	}
	return nil
}

// children returns the child slots the directory of slot of level l flags and that meet the
// walk's time range, newest first (none if it does not exist).
func (w *listWalk) children(ctx context.Context, l int, slot int64) ([]int64, error) {
	var dir struct {
		C map[string]bool `bson:"c"`
	}
	err := w.s.list.FindOne(ctx, bson.D{{Key: "_id", Value: slotID(w.key, l, slot)}}).Decode(&dir)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	width := slotWidths[l-1]
	var children []int64
	for k := range dir.C {
		c, err := strconv.ParseInt(k, 10, 64)
		if err != nil {
			continue
		}
		// The child's range [c*width, (c+1)*width) must meet [lo, hi).
		if c*width < w.hi && (c+1)*width > w.lo {
			children = append(children, c)
		}
	}
	slices.Sort(children)
	slices.Reverse(children)
	return children, nil
}

// readBucket returns the entries of the bucket of slot (none if it does not exist).
func (w *listWalk) readBucket(ctx context.Context, slot int64) (map[string]string, error) {
	var b struct {
		E map[string]string `bson:"e"`
	}
	err := w.s.list.FindOne(ctx, bson.D{{Key: "_id", Value: slotID(w.key, 0, slot)}}).Decode(&b)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	return b.E, err
}

// entries returns the entries b of the bucket of slot that pass the filter, newest first
// (ties by job ID, descending).
func (w *listWalk) entries(slot int64, b map[string]string) []entry {
	var es []entry
	for k, v := range b {
		if e, ok := parseEntry(unfieldKey(k), v); ok && e.matches(w.f) {
			e.slot = slot
			es = append(es, e)
		}
	}
	slices.SortFunc(es, func(a, b entry) int {
		if a.ms != b.ms {
			return cmpInt(b.ms, a.ms)
		}
		return strings.Compare(b.id, a.id)
	})
	return es
}

// take lists the jobs of entries es (newest first) whose views agree with their entries, until
// the page is full.
func (w *listWalk) take(ctx context.Context, es []entry) error {
	for len(es) > 0 && !w.done() {
		n := min(len(es), w.limit-len(w.out))
		js, err := w.views(ctx, es[:n])
		if err != nil {
			return err
		}
		w.out = append(w.out, js...)
		es = es[n:]
	}
	return nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// views reads the views of es (in parallel, order kept) and returns the jobs whose view agrees
// with their entry and passes the filter.
func (w *listWalk) views(ctx context.Context, es []entry) ([]*jobs.Job, error) {
	w.round()
	js, errs := readEach(es, func(e entry) (*jobs.Job, error) { return w.view(ctx, e) })
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(js, func(j *jobs.Job) bool { return j == nil }), nil
}

func (w *listWalk) view(ctx context.Context, e entry) (*jobs.Job, error) {
	var v viewDoc
	err := w.s.views.FindOne(ctx, bson.D{{Key: "_id", Value: e.id}}).Decode(&v)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read view of job %s: %w", e.id, err)
	}
	j, err := v.job()
	if err != nil {
		return nil, err
	}
	ve := entryOf(j, v.LV)
	if ve.ms != e.ms {
		if v.LV > e.lv {
			w.mu.Lock()
			w.moving = append(w.moving, j.ID)
			w.mu.Unlock()
		}
		if v.LV > e.lv && slotOf(0, ve.ms) == e.slot {
			// A slow writer put an older entry over the view's own: put the view's back.
			for _, key := range []string{keyAll, userKey(j.User)} {
				if err := w.s.putEntry(ctx, key, ve); err != nil {
					w.s.log.WarnContext(ctx, "stale entry of the job list not repaired", "job_id", j.ID, "error", err.Error())
				}
			}
		}
		return nil, nil
	}
	if !ve.matches(w.f) || w.f.User != "" && j.User != w.f.User {
		return nil, nil
	}
	return j, nil
}
