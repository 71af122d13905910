package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/kbase/cts/coordinator/internal/metrics"
	"github.com/kbase/cts/coordinator/internal/store"
)

// StartTimeout bounds each dependency check at start (MongoDB, S3, Kafka). A coordinator that
// cannot reach one of them stops with an error naming it rather than serving requests that
// would all fail.
var StartTimeout = 15 * time.Second

// connectStore connects to MongoDB within StartTimeout.
func connectStore(ctx context.Context, cfg Config, log *slog.Logger) (*store.Store, error) {
	sctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	st, err := store.New(sctx, store.Config{URI: cfg.Mongo.URI, Database: cfg.Mongo.Database, Timeout: cfg.Mongo.Timeout, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("MongoDB at %s: %s: check mongo.uri and that MongoDB is running", mongoHosts(cfg.Mongo.URI), mongoReason(err, min(StartTimeout, cfg.Mongo.Timeout)))
	}
	return st, nil
}

// mongoHosts returns the host part of a MongoDB URI, without credentials or options.
func mongoHosts(uri string) string {
	u, err := url.Parse(uri)
	if err != nil || u.Host == "" {
		return "(the configured URI)"
	}
	return u.Host
}

// lastErrorRE finds the last connection error in the driver's server selection error, which
// otherwise describes the whole topology.
var lastErrorRE = regexp.MustCompile(`Last error: (.*?) }`)

// mongoReason shortens the driver's error to what a person can act on.
// within is how long the driver waited (each operation is bounded by mongo.timeout).
func mongoReason(err error, within time.Duration) string {
	msg := err.Error()
	if m := lastErrorRE.FindStringSubmatch(msg); m != nil {
		return "no answer within " + within.String() + " (" + m[1] + ")"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer within " + within.String()
	}
	return msg
}

// checkS3 sends HeadBucket for the log bucket within StartTimeout.
func checkS3(ctx context.Context, c *s3.Client, cfg Config) error {
	bucket, _, _ := strings.Cut(strings.Trim(cfg.Jobs.LogDir, "/"), "/")
	sctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	_, err := c.HeadBucket(sctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}, func(o *s3.Options) { o.RetryMaxAttempts = 2 })
	if err == nil {
		return nil
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) && re.HTTPStatusCode() > 0 {
		// HEAD answers carry no error code: ask again with a request whose answer does
		// (some servers answer an unknown access key with 404).
		code := re.HTTPStatusCode()
		_, lerr := c.ListObjectsV2(sctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), MaxKeys: aws.Int32(1)},
			func(o *s3.Options) { o.RetryMaxAttempts = 2 })
		var ae smithy.APIError
		if errors.As(lerr, &ae) {
			switch ae.ErrorCode() {
			case "NoSuchBucket":
				code = 404
			case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "XAdminUserNotFound", "InvalidSecurity":
				code = 403
			default:
				return fmt.Errorf("S3 at %s: bucket %s: %s: %s", cfg.S3.Endpoint, bucket, ae.ErrorCode(), ae.ErrorMessage())
			}
		}
		switch code {
		case 404:
			return fmt.Errorf("S3 at %s has no bucket %s (the bucket of jobs.log_dir): create it or fix jobs.log_dir", cfg.S3.Endpoint, bucket)
		case 401, 403:
			return fmt.Errorf("S3 at %s refused the credentials for bucket %s: check s3.access_key and the secret key", cfg.S3.Endpoint, bucket)
		}
		return fmt.Errorf("S3 at %s: bucket %s: HTTP %d", cfg.S3.Endpoint, bucket, code)
	}
	reason := "no answer within " + StartTimeout.String()
	if errors.Is(err, syscall.ECONNREFUSED) {
		reason = "connection refused"
	} else if !errors.Is(err, context.DeadlineExceeded) {
		reason = lastCause(err)
	}
	return fmt.Errorf("S3 at %s is unreachable (%s): check s3.endpoint and that the S3 service is running", cfg.S3.Endpoint, reason)
}

// checkKafka asks the brokers for the cluster's metadata within StartTimeout.
func checkKafka(ctx context.Context, brokers []string) error {
	sctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	if err := metrics.KafkaCheck(brokers).Probe(sctx); err != nil {
		reason := "no answer within " + StartTimeout.String()
		if errors.Is(err, syscall.ECONNREFUSED) {
			reason = "connection refused"
		} else if !errors.Is(err, context.DeadlineExceeded) {
			reason = lastCause(err)
		}
		return fmt.Errorf("the Kafka brokers %s are unreachable (%s): check kafka.brokers and that Kafka is running", strings.Join(brokers, ","), reason)
	}
	return nil
}

// lastCause is the innermost error's text.
func lastCause(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// listenError says why the coordinator cannot listen on addr.
func listenError(addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("listen on %s: the address is in use by another program: stop it or change listen", addr)
	}
	return fmt.Errorf("listen on %s: %w", addr, err)
}
