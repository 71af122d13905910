package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/segmentio/kafka-go"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Check is one readiness probe of a dependency.
type Check struct {
	// Name names the dependency in the /readyz answer ("mongodb", "s3", "kafka", "site:kbase").
	Name string
	// Probe returns nil when the dependency answers; it must honour ctx's deadline.
	Probe func(ctx context.Context) error
	// Degrades marks a dependency without which this replica still serves: its failure makes
	// the answer "degraded" (200), not "unavailable" (503).
	Degrades bool
}

// SiteCheck reports a compute site's availability (its launcher plugin runs). A site that is
// down only degrades the replica: every other site and every read still work, and every
// replica runs its own plugins, so taking this one out of service would not help.
func SiteCheck(site string, available func(site string) (bool, string)) Check {
	return Check{Name: "site:" + site, Degrades: true, Probe: func(context.Context) error {
		if ok, reason := available(site); !ok {
			return errors.New(reason)
		}
		return nil
	}}
}

// MongoCheck pings MongoDB.
func MongoCheck(c *mongo.Client) Check {
	return Check{Name: "mongodb", Probe: func(ctx context.Context) error {
		if err := c.Ping(ctx, nil); err != nil {
			return fmt.Errorf("ping: %w", err)
		}
		return nil
	}}
}

// S3Check sends HeadBucket for bucket (the log bucket: the coordinator writes there).
func S3Check(c *s3.Client, bucket string) Check {
	return Check{Name: "s3", Probe: func(ctx context.Context) error {
		if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
			return fmt.Errorf("head bucket %s: %w", bucket, err)
		}
		return nil
	}}
}

// KafkaCheck dials the brokers in turn and asks the first that answers for the cluster's
// metadata (its broker list); it fails when none answers.
func KafkaCheck(brokers []string) Check {
	return Check{Name: "kafka", Probe: func(ctx context.Context) error {
		if len(brokers) == 0 {
			return errors.New("no brokers configured")
		}
		var errs []error
		for _, b := range brokers {
			conn, err := (&kafka.Dialer{}).DialContext(ctx, "tcp", b)
			if err != nil {
				errs = append(errs, fmt.Errorf("dial %s: %w", b, err))
				continue
			}
			if dl, ok := ctx.Deadline(); ok {
				_ = conn.SetDeadline(dl)
			}
			_, err = conn.Brokers()
			_ = conn.Close()
			if err != nil {
				errs = append(errs, fmt.Errorf("metadata from %s: %w", b, err))
				continue
			}
			return nil
		}
		return errors.Join(errs...)
	}}
}

// Readiness is the JSON body of /readyz.
type Readiness struct {
	// Status is "ready", "degraded" (a dependency that Degrades failed; still 200) or
	// "unavailable" (503).
	Status string `json:"status"`
	// Checks maps each dependency to "ok" or the reason it failed; only for admins.
	Checks map[string]string `json:"checks,omitempty"`
	// Failed names the dependencies that failed, sorted (absent when ready); only for admins.
	Failed []string `json:"failed,omitempty"`
}

// Ready serves GET /readyz: every check runs concurrently with timeout; 200 "ready" when all
// pass, 200 "degraded" when only checks that Degrade failed, 503 "unavailable" otherwise.
// Anyone may ask, and learns only the status: the failure reasons name internal hosts and
// ports. A request for which admin returns true (a service
// administrator's token) also gets every check's result; admin is called only for requests
// with an Authorization header, and bounded by the same timeout, so the probe itself never
// waits on auth2. A nil admin never shows details.
func Ready(checks []Check, timeout time.Duration, admin func(ctx context.Context, r *http.Request) bool) http.Handler {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		res := Readiness{Status: "ready", Checks: make(map[string]string, len(checks))}
		hard := false
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, c := range checks {
			wg.Go(func() {
				err := c.Probe(ctx)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					res.Checks[c.Name] = err.Error()
					res.Failed = append(res.Failed, c.Name)
					hard = hard || !c.Degrades
					return
				}
				res.Checks[c.Name] = "ok"
			})
		}
		details := false
		if admin != nil && r.Header.Get("Authorization") != "" {
			wg.Go(func() { details = admin(ctx, r) })
		}
		wg.Wait()
		code := http.StatusOK
		sort.Strings(res.Failed)
		switch {
		case hard:
			res.Status = "unavailable"
			code = http.StatusServiceUnavailable
		case len(res.Failed) > 0:
			res.Status = "degraded"
		}
		if !details {
			res.Checks, res.Failed = nil, nil
		}
		writeJSON(w, code, res)
	})
}

// Healthy serves GET /healthz: 200 as long as the process serves HTTP.
func Healthy() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
