// Package notify owns the Kafka notifications of job state transitions: the
// message format (byte-identical to the Python service's json.dumps), and the sender that
// drains the outbox kept in the job documents (transitions with notif_sent false) to Kafka,
// marking each transition sent only after the broker acknowledged it. Delivery is
// at-least-once: a crash between the acknowledgement and the mark, or two coordinators
// scanning at once, resends a transition.
//
// It must not decide which transitions happen nor write anything but the notif_sent marks,
// and a Kafka outage must never block or fail the callers that change job states: they only
// Poke the sender.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/jobs"
)

// DefaultTopic is the topic of job notifications when the configuration names none.
const DefaultTopic = "cts-jobs"

// DefaultInterval is the period of the resend scan when the configuration gives none.
const DefaultInterval = 10 * time.Second

const (
	// maxTopicLen is Kafka's limit on topic names.
	maxTopicLen = 249
	// scanLimit is the number of jobs one outbox scan reads; a full scan is followed at once
	// by another.
	scanLimit = 500
	// writeTimeout bounds one produce request; sendTimeout one WriteMessages call (all its
	// attempts), so a black-holed broker cannot stall the loop.
	writeTimeout = 10 * time.Second
	sendTimeout  = 30 * time.Second
	// minBackoff is the first retry delay after a failure; it doubles up to the Interval.
	minBackoff = 200 * time.Millisecond
)

// topicRE is the Python service's rule: no '.' or '_', which Kafka treats as colliding.
var topicRE = regexp.MustCompile(`^[a-zA-Z0-9-]+$`)

// Config configures the notifier.
type Config struct {
	// Brokers are the bootstrap brokers ("host:port").
	Brokers []string
	// Topic is the notification topic; DefaultTopic if empty. It must match
	// ^[a-zA-Z0-9-]+$ and be at most 249 characters long.
	Topic string
	// Interval is the period of the resend scan; DefaultInterval if zero.
	Interval time.Duration
	// SendTimeout bounds Send, the admin's re-send of one notification (on a request path);
	// DefaultSendTimeout if zero.
	SendTimeout time.Duration
}

// DefaultSendTimeout bounds Send when the configuration gives no SendTimeout.
const DefaultSendTimeout = 5 * time.Second

// withDefaults returns cfg with its zero fields defaulted.
func (cfg Config) withDefaults() Config {
	if cfg.Topic == "" {
		cfg.Topic = DefaultTopic
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = DefaultSendTimeout
	}
	return cfg
}

// Validate returns every problem of cfg (after defaults) joined, or nil.
func (cfg Config) Validate() error {
	cfg = cfg.withDefaults()
	var errs []error
	if len(cfg.Brokers) == 0 {
		errs = append(errs, errors.New("no kafka brokers"))
	}
	for _, b := range cfg.Brokers {
		if strings.TrimSpace(b) == "" {
			errs = append(errs, errors.New("empty kafka broker address"))
		}
	}
	if !topicRE.MatchString(cfg.Topic) {
		errs = append(errs, fmt.Errorf("kafka topic %q: only letters, digits and '-' are allowed", cfg.Topic))
	}
	if len(cfg.Topic) > maxTopicLen {
		errs = append(errs, fmt.Errorf("kafka topic is %d characters long, at most %d allowed", len(cfg.Topic), maxTopicLen))
	}
	if cfg.Interval < 0 {
		errs = append(errs, fmt.Errorf("kafka resend interval %s is negative", cfg.Interval))
	}
	return errors.Join(errs...)
}

// Outbox is the store side of notifications: the transitions not yet acknowledged by Kafka.
type Outbox interface {
	// UnsentTransitions returns up to limit jobs having transitions with notif_sent false and
	// time before olderThan, oldest first, each with only those transitions, in order.
	UnsentTransitions(ctx context.Context, olderThan time.Time, limit int) ([]*jobs.Job, error)
	// MarkNotified sets notif_sent on the transitions transIDs of job id (one store write
	// for all of them).
	MarkNotified(ctx context.Context, id string, transIDs ...string) error
}

// Notifier sends job transitions to Kafka. Run is its sender loop; Poke wakes it.
type Notifier struct {
	cfg       Config
	ob        Outbox
	log       *slog.Logger
	w         *kafka.Writer
	transport *kafka.Transport
	poke      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg and returns a notifier. It does not connect: Kafka being down at start is
// an outage like any other, handled by Run.
func New(cfg Config, ob Outbox, log *slog.Logger) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka notifier config: %w", err)
	}
	if ob == nil {
		return nil, errors.New("kafka notifier: nil outbox")
	}
	if log == nil {
		log = slog.Default()
	}
	cfg = cfg.withDefaults()
	// Its own transport: the shared default caches metadata (a new topic stays unknown for
	// seconds) and would be shared with every other kafka-go user of the process.
	transport := &kafka.Transport{DialTimeout: 5 * time.Second}
	w := &kafka.Writer{
		Addr:  kafka.TCP(cfg.Brokers...),
		Topic: cfg.Topic,
		// Key = job ID; the key picks the partition as Java clients do, so one job's
		// transitions stay in order.
		Balancer:               &kafka.Murmur2Balancer{},
		RequiredAcks:           kafka.RequireAll,
		BatchTimeout:           5 * time.Millisecond,
		WriteTimeout:           writeTimeout,
		ReadTimeout:            writeTimeout,
		MaxAttempts:            3,
		AllowAutoTopicCreation: true,
		Transport:              transport,
	}
	return &Notifier{
		cfg: cfg, ob: ob, log: log, w: w, transport: transport,
		poke: make(chan struct{}, 1),
	}, nil
}

// Poke wakes the sender loop. It never blocks; pokes that arrive while one is pending
// coalesce into it.
func (n *Notifier) Poke() {
	select {
	case n.poke <- struct{}{}:
	default:
	}
}

// Run is the sender loop: on every Poke, and every Interval, it sends every unsent transition
// (oldest job first, each job's transitions in order) and marks each one sent after Kafka
// acknowledged it. A failure (Kafka or the store down) is logged once per outage and retried
// with a backoff that doubles up to Interval. Run returns nil when ctx is done, and only then.
func (n *Notifier) Run(ctx context.Context) error {
	ticker := time.NewTicker(n.cfg.Interval)
	defer ticker.Stop()
	var (
		downSince time.Time
		failures  int
		backoff   = minBackoff
	)
	for {
		err := n.flush(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			failures++
			if downSince.IsZero() {
				downSince = time.Now()
				n.log.Error("kafka notifications failing; retrying until they get through", "error", err.Error())
			} else {
				n.log.Debug("kafka notifications still failing", "error", err.Error(), "attempts", failures)
			}
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(2*backoff, max(n.cfg.Interval, minBackoff))
			continue
		}
		if !downSince.IsZero() {
			n.log.Info("kafka notifications delivered again", "outage", time.Since(downSince).Round(time.Millisecond).String(), "failed_attempts", failures)
			downSince, failures, backoff = time.Time{}, 0, minBackoff
		}
		select {
		case <-ctx.Done():
			return nil
		case <-n.poke:
		case <-ticker.C:
		}
	}
}

// sleep waits for d or ctx; it reports false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// flush sends unsent transitions until the outbox has none older than the start of the
// flush.
func (n *Notifier) flush(ctx context.Context) error {
	now := time.Now()
	for {
		js, err := n.ob.UnsentTransitions(ctx, now, scanLimit)
		if err != nil {
			return fmt.Errorf("read unsent transitions: %w", err)
		}
		if len(js) == 0 {
			return nil
		}
		if err := n.sendAndMark(ctx, js); err != nil {
			return err
		}
		if len(js) < scanLimit {
			return nil
		}
	}
}

// sendAndMark writes the transitions of js in one synchronous batch and marks those the
// broker acknowledged.
func (n *Notifier) sendAndMark(ctx context.Context, js []*jobs.Job) error {
	type ref struct{ job, trans string }
	var (
		msgs []kafka.Message
		refs []ref
	)
	for _, j := range js {
		for _, t := range j.Transitions {
			msgs = append(msgs, kafka.Message{Key: []byte(j.ID), Value: Encode(j.ID, t)})
			refs = append(refs, ref{j.ID, t.TransID})
		}
	}
	sctx, cancel := context.WithTimeout(ctx, sendTimeout)
	err := n.w.WriteMessages(sctx, msgs...)
	cancel()
	var werrs kafka.WriteErrors
	switch {
	case err == nil:
	case errors.As(err, &werrs) && len(werrs) == len(msgs):
		// Some messages may have been acknowledged: mark those, report the rest.
	default:
		return fmt.Errorf("send %d notifications: %w", len(msgs), err)
	}
	// The acknowledged transitions of each job, marked in one call per job, jobs in order.
	var (
		order []string
		acked = map[string][]string{}
	)
	for i, r := range refs {
		if werrs != nil && werrs[i] != nil {
			continue
		}
		if _, ok := acked[r.job]; !ok {
			order = append(order, r.job)
		}
		acked[r.job] = append(acked[r.job], r.trans)
	}
	var markErrs []error
	for _, id := range order {
		if err := n.ob.MarkNotified(ctx, id, acked[id]...); err != nil && !errors.Is(err, jobs.ErrNotFound) {
			// A vanished job or transition has nothing left to mark.
			markErrs = append(markErrs, err)
		}
	}
	if werrs != nil {
		return fmt.Errorf("send %d notifications: %d failed: %w", len(msgs), werrs.Count(), err)
	}
	if len(markErrs) > 0 {
		return fmt.Errorf("mark the notifications of %d of %d jobs sent: %w", len(markErrs), len(order), errors.Join(markErrs...))
	}
	return nil
}

// Send sends one transition of job jobID now, without marking it: the admin re-send. It waits
// for the broker's acknowledgement, at most Config.SendTimeout; a broker that does not
// acknowledge in time is a *ctserr.UnavailableError naming Kafka.
func (n *Notifier) Send(ctx context.Context, jobID string, t jobs.Transition) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.SendTimeout)
	defer cancel()
	if err := n.w.WriteMessages(ctx, kafka.Message{Key: []byte(jobID), Value: Encode(jobID, t)}); err != nil {
		err = fmt.Errorf("send notification of job %s transition %s: %w", jobID, t.TransID, err)
		if errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			return err // the caller went away
		}
		return ctserr.Unavailable(ctserr.DependencyKafka, err)
	}
	return nil
}

// countLimit bounds the jobs CheckUnsent counts in one call.
const countLimit = 10000

// CheckUnsent counts the jobs and transitions not yet acknowledged by Kafka whose time is
// before olderThan, and wakes the sender loop, which delivers them (POST
// /admin/unsent_notifications). Like the Python service it returns before they are sent; a
// transition another coordinator is sending at the same moment may be delivered twice.
func (n *Notifier) CheckUnsent(ctx context.Context, olderThan time.Time) (jobCount, transitions int, err error) {
	js, err := n.ob.UnsentTransitions(ctx, olderThan, countLimit)
	if err != nil {
		return 0, 0, fmt.Errorf("count unsent notifications: %w", err)
	}
	for _, j := range js {
		transitions += len(j.Transitions)
	}
	n.Poke()
	return len(js), transitions, nil
}

// Close releases the Kafka writer and its connections. Call it after Run returned. It is
// idempotent.
func (n *Notifier) Close() error {
	n.closeOnce.Do(func() {
		if err := n.w.Close(); err != nil {
			n.closeErr = fmt.Errorf("close kafka writer: %w", err)
		}
		n.transport.CloseIdleConnections()
	})
	return n.closeErr
}
