// Package store owns the coordinator's MongoDB persistence (official driver v2): the jobs,
// subjobs, images, sites and refdata collections, their indexes, the job document layout (the
// Python service's, so both can read the same database) and the queries. It implements the
// narrow store interface of each package that persists through it (admission, ingest, launch,
// reconcile, sites, notify, images, refdata, and jobs' records and transitions); every state
// change is one conditional update on one document, so two writers can never both move a job.
//
// It must not hold business rules (which transitions are legal is decided by the caller, who
// passes the allowed "from" states) and must not talk to anything but MongoDB.
//
// The store also runs against FerretDB v1 (the embedded dev/test stack), and takes one code
// path on both servers: every operation is written in a form both serve with the same
// semantics. FerretDB lacks the positional update operator ($), arrayFilters, a working
// $elemMatch, partial indexes and any index but _id's (with the embedded stack's proxy, see
// devstack): so MarkNotified updates a transition by its index, guarded by its trans_id;
// GetSubJobs reads the sub-jobs by _id; the periodic passes and the job list read small
// documents by _id (work.go, joblist.go); and the one partial index left (images' tag) is
// created without its filter where refused, which keeps its meaning there (see indexSpecs).
//
// Jobs and sub-jobs are keyed by _id (the job ID; "<job ID>/<sub ID>"), and the periodic passes
// find the jobs they act on through the small job_work and job_due collections, never by
// scanning the history (work.go). Databases written before are migrated once at start (migrate.go).
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/kbase/cts/coordinator/internal/admission"
	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/images"
	"github.com/kbase/cts/coordinator/internal/ingest"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/notify"
	"github.com/kbase/cts/coordinator/internal/sites"
)

// Collection names.
const (
	collJobs    = "jobs"
	collSubJobs = "subjobs"
	collImages  = "images"
	collSites   = "sites"
)

// Index names the duplicate-key mapping of SaveImage relies on.
const (
	indexImageDigest = "name_1_digest_1"
	indexImageTag    = "name_1_tag_1"
)

// defaultLimit is the result cap of list queries when the caller gives none (as in the
// Python service).
const defaultLimit = 1000

// Config configures the store.
type Config struct {
	// URI is the mongodb:// connection string (credentials included, if any).
	URI string
	// Database is the database holding the CTS collections.
	Database string
	// Logger receives the warnings about server features that had to be worked around;
	// slog.Default() if nil.
	Logger *slog.Logger
	// Timeout bounds every operation whose context has no earlier deadline, server selection
	// and connecting included (DefaultTimeout when zero): a hung or refusing MongoDB fails a
	// request within it, as an outage (see Unavailable).
	Timeout time.Duration
}

// DefaultTimeout bounds each MongoDB operation when Config.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// ClientOptions returns the driver options of a client for uri with every operation bounded
// by timeout (DefaultTimeout when zero).
func ClientOptions(uri string, timeout time.Duration) *options.ClientOptions {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return options.Client().ApplyURI(uri).SetTimeout(timeout).SetServerSelectionTimeout(timeout).SetConnectTimeout(timeout)
}

// Unavailable returns err as MongoDB's outage, a *ctserr.UnavailableError, when it is one (no
// server could be selected, a connection failed, an operation ran out of time), and nil when
// it is not: the API turns outages into 503s naming MongoDB.
func Unavailable(err error) error {
	if err == nil || errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	var sse topology.ServerSelectionError
	switch {
	case errors.As(err, &sse):
		ue := ctserr.Unavailable(ctserr.DependencyMongoDB, err)
		// Selection ends in a timeout whatever the cause; the servers' last errors tell it.
		for _, srv := range sse.Desc.Servers {
			if srv.LastError != nil {
				if r := ctserr.Unavailable(ctserr.DependencyMongoDB, srv.LastError).Reason; r != "answered with an error" {
					ue.Reason = r
				}
				break
			}
		}
		return ue
	}
	var pool driver.RetryablePoolError // "connection pool ... was cleared because another operation failed"
	var conn topology.ConnectionError
	var closed topology.PoolError
	if mongo.IsTimeout(err) || mongo.IsNetworkError(err) || errors.Is(err, mongo.ErrClientDisconnected) ||
		errors.As(err, &pool) || errors.As(err, &conn) || errors.As(err, &closed) {
		return ctserr.Unavailable(ctserr.DependencyMongoDB, err)
	}
	return nil
}

// Store is the MongoDB implementation of the coordinator's store interfaces. It is safe for
// concurrent use.
type Store struct {
	client  *mongo.Client
	db      *mongo.Database
	jobs    *mongo.Collection
	subjobs *mongo.Collection
	images  *mongo.Collection
	sites   *mongo.Collection
	work    *mongo.Collection
	due     *mongo.Collection
	counts  *mongo.Collection
	views   *mongo.Collection
	list    *mongo.Collection
	clean   *mongo.Collection
	log     *slog.Logger
	// listCache remembers the list index's directory flags this process wrote (joblist.go).
	listCache listCache
	// positions remembers the transitions UnsentTransitions read, for MarkNotified (jobs.go).
	positions transPositions
	// containers remembers the container counts of the jobs this store read or wrote, for
	// GetSubJobs (jobs.go).
	containers containerCounts
	// listRetryHook, set by tests, runs before each new walk of ListJobs.
	listRetryHook func(attempt int)
	// listRoundHook, set by tests, runs before each round of reads of a ListJobs walk (one
	// read, or a batch of reads in parallel).
	listRoundHook func()
	// presenceWrites counts PutPresence calls (heartbeats.go: it prunes every hundredth).
	presenceWrites atomic.Int64
}

// The store implements the narrow store interface of every package that persists through it.
var (
	_ admission.Store      = (*Store)(nil)
	_ ingest.Store         = (*Store)(nil)
	_ jobs.RecordStore     = (*Store)(nil)
	_ jobs.TransitionStore = (*Store)(nil)
	_ sites.Store          = (*Store)(nil)
	_ notify.Outbox        = (*Store)(nil)
	_ images.Store         = (*Store)(nil)
)

// New connects to MongoDB, pings it, creates the indexes of the jobs, subjobs and images
// collections and migrates a database of an older layout (migrate.go). ctx bounds the start,
// except that a migration runs past ctx's deadline (not past its cancellation).
func New(ctx context.Context, cfg Config) (*Store, error) {
	return newStore(ctx, cfg, nil)
}

// newStore is New with the client's options adjusted by tune (tests watch its commands).
func newStore(ctx context.Context, cfg Config, tune func(*options.ClientOptions)) (*Store, error) {
	if cfg.URI == "" {
		return nil, errors.New("new store: empty mongo URI")
	}
	if cfg.Database == "" {
		return nil, errors.New("new store: empty database name")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	opts := ClientOptions(cfg.URI, cfg.Timeout).
		// Nested documents of free-form fields (admin_meta) decode as maps, which render
		// as JSON objects; bson.D would render as a list of key/value pairs.
		SetBSONOptions(&options.BSONOptions{DefaultDocumentM: true})
	if tune != nil {
		tune(opts)
	}
	client, err := mongo.Connect(opts)
	if err != nil {
		return nil, fmt.Errorf("connect mongo: %w", err)
	}
	s := &Store{client: client, log: log}
	if err := s.init(ctx, cfg.Database); err != nil {
		// The start failed: the disconnect error adds nothing the caller can act on.
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, err
	}
	return s, nil
}

func (s *Store) init(ctx context.Context, database string) error {
	if err := s.client.Ping(ctx, nil); err != nil {
		return fmt.Errorf("ping mongo: %w", err)
	}
	db := s.client.Database(database)
	s.db = db
	s.jobs = db.Collection(collJobs)
	s.subjobs = db.Collection(collSubJobs)
	s.images = db.Collection(collImages)
	s.sites = db.Collection(collSites)
	s.work = db.Collection(collWork)
	s.due = db.Collection(collDue)
	s.counts = db.Collection(collCounts)
	s.views = db.Collection(collViews)
	s.list = db.Collection(collList)
	s.clean = db.Collection(collClean)

	if err := s.createIndexes(ctx); err != nil {
		return err
	}
	// A migration reads every job once: ctx's deadline, meant for connecting, does not bound
	// it (each operation has the client's timeout); its cancellation does.
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			cancel()
		}
	})
	defer stop()
	return s.migrate(mctx)
}

// Close disconnects from MongoDB.
func (s *Store) Close(ctx context.Context) error {
	if err := s.client.Disconnect(ctx); err != nil {
		return fmt.Errorf("disconnect mongo: %w", err)
	}
	return nil
}

// index describes one index to create.
type index struct {
	keys    bson.D
	unique  bool
	partial bson.D
	// sparseFallback makes the index sparse when the server refuses the partial filter.
	sparseFallback bool
	// name overrides the driver's generated name (which is the one the Python service has).
	name string
}

func terminalStates() bson.A { return bson.A{"canceled", "complete", "error"} }

// indexSpecs lists the indexes of the Python service for the collections this store owns.
func (s *Store) indexSpecs() []struct {
	coll *mongo.Collection
	idx  index
} {
	type spec = struct {
		coll *mongo.Collection
		idx  index
	}
	ut := func(k ...bson.E) bson.D { return append(bson.D(k), bson.E{Key: "_update_time", Value: -1}) }
	return []spec{
		{s.jobs, index{keys: bson.D{{Key: "id", Value: 1}}, unique: true}},
		{s.jobs, index{keys: ut()}},
		{s.jobs, index{keys: ut(bson.E{Key: "state", Value: 1})}},
		{s.jobs, index{keys: ut(bson.E{Key: "job_input.cluster", Value: 1})}},
		{s.jobs, index{keys: ut(bson.E{Key: "user", Value: 1})}},
		{s.jobs, index{keys: ut(bson.E{Key: "user", Value: 1}, bson.E{Key: "state", Value: 1})}},
		{s.jobs, index{keys: ut(bson.E{Key: "user", Value: 1}, bson.E{Key: "job_input.cluster", Value: 1})}},
		// The job list's image filter (not in the Python service): by name, for one user or all.
		{s.jobs, index{keys: ut(bson.E{Key: "image.name", Value: 1})}},
		{s.jobs, index{keys: ut(bson.E{Key: "user", Value: 1}, bson.E{Key: "image.name", Value: 1})}},
		// The cleaner's queue, oldest first (clean.go).
		{s.clean, index{keys: bson.D{{Key: "t", Value: 1}}}},
		{s.subjobs, index{keys: bson.D{{Key: "id", Value: 1}, {Key: "sub_id", Value: 1}}, unique: true}},
		// The periodic passes' queries of the work documents (work.go).
		{s.work, index{keys: bson.D{{Key: "state", Value: 1}, {Key: "t", Value: 1}}}},
		{s.work, index{keys: bson.D{{Key: "account", Value: 1}, {Key: "t", Value: 1}}}},
		// The submitter's and the notifier's queries of the due queue (work.go).
		{s.due, index{keys: bson.D{{Key: "state", Value: 1}, {Key: "t", Value: 1}}}},
		{s.due, index{keys: bson.D{{Key: "unsent", Value: 1}, {Key: "t", Value: 1}}}},
		{s.sites, index{keys: bson.D{{Key: "site", Value: 1}}, unique: true}},
		{s.images, index{
			keys:   bson.D{{Key: "name", Value: 1}, {Key: "digest", Value: 1}},
			unique: true, name: indexImageDigest,
		}},
		// A tag is unique per name only among tagged images. The Python service used a sparse
		// compound index, which still indexes (and so collides on) untagged documents because
		// they contain "name"; the partial filter is what makes untagged digests free.
		// FerretDB refuses the filter; its SQLite unique indexes treat a missing tag as NULL,
		// and NULLs never collide, so the sparse fallback behaves the same there.
		{s.images, index{
			keys:   bson.D{{Key: "name", Value: 1}, {Key: "tag", Value: 1}},
			unique: true, name: indexImageTag,
			partial:        bson.D{{Key: "tag", Value: bson.D{{Key: "$exists", Value: true}}}},
			sparseFallback: true,
		}},
	}
}

// createIndexes creates every index; an index whose partial filter the server refuses as not
// implemented (FerretDB) is created without it, said once at INFO.
func (s *Store) createIndexes(ctx context.Context) error {
	var unfiltered []string
	for _, sp := range s.indexSpecs() {
		model := func(partial bool) mongo.IndexModel {
			o := options.Index()
			if sp.idx.unique {
				o.SetUnique(true)
			}
			if sp.idx.name != "" {
				o.SetName(sp.idx.name)
			}
			if partial {
				o.SetPartialFilterExpression(sp.idx.partial)
			} else if sp.idx.sparseFallback {
				o.SetSparse(true)
			}
			return mongo.IndexModel{Keys: sp.idx.keys, Options: o}
		}
		_, err := sp.coll.Indexes().CreateOne(ctx, model(sp.idx.partial != nil))
		if err != nil && sp.idx.partial != nil && isNotImplemented(err) {
			unfiltered = append(unfiltered, sp.coll.Name()+" "+fmt.Sprint(sp.idx.keys))
			_, err = sp.coll.Indexes().CreateOne(ctx, model(false))
		}
		if err != nil {
			return fmt.Errorf("create index %v on %s: %w", sp.idx.keys, sp.coll.Name(), err)
		}
	}
	if len(unfiltered) > 0 {
		s.log.Info("mongo server has no partial indexes (FerretDB, the embedded stack): created without their filter, "+
			"with the same meaning there (images: a tag is unique per name among tagged images; untagged images never collide)",
			"indexes", strings.Join(unfiltered, "; "))
	}
	return nil
}

// isNotImplemented reports the server's NotImplemented (238) command error.
func isNotImplemented(err error) bool {
	var ce mongo.CommandError
	return errors.As(err, &ce) && (ce.Code == 238 || ce.Name == "NotImplemented")
}

// isDuplicateKey reports a unique-index violation: E11000 from MongoDB (and from FerretDB on
// insert), or FerretDB's InternalError wrapping SQLite's UNIQUE constraint (on update).
func isDuplicateKey(err error) bool {
	if mongo.IsDuplicateKeyError(err) {
		return true
	}
	var se mongo.ServerError
	return errors.As(err, &se) && se.HasErrorMessage("UNIQUE constraint failed")
}

// duplicateIndex returns the name of the index a duplicate-key error names, if it names one of
// ours. MongoDB writes "... index: name_1_tag_1 dup key ..."; FerretDB's update error names
// the SQLite index "images_<hash>_name_1_tag_1"; FerretDB's insert error names none.
func duplicateIndex(err error) string {
	msg := err.Error()
	for _, name := range []string{indexImageTag, indexImageDigest} {
		if strings.Contains(msg, name) {
			return name
		}
	}
	return ""
}

// msTime is t in UTC truncated to the millisecond: what a BSON date can hold, so the value the
// caller keeps equals the stored one.
func msTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Truncate(time.Millisecond).UTC()
}

func limitOrDefault(n int) int64 {
	if n <= 0 {
		return defaultLimit
	}
	return int64(n)
}
