package devstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kbase/cts/coordinator/devstack/auth2"
)

// DefaultTopic is the Kafka topic Start creates when Options.Topics is empty.
const DefaultTopic = "cts-jobs"

// Options configures Start.
type Options struct {
	// Dir holds all state: S3 objects, metadata and credentials under Dir/s3, the MongoDB
	// (SQLite) files under Dir/mongo, Kafka's log under Dir/kafka, the registry's images
	// under Dir/registry, and the addresses everything listened on in Dir/addrs.json.
	// Relative paths are made absolute. Required for Start; TestStack uses tb.TempDir when
	// empty. Starting again on a Dir keeps all of it: the same S3 credentials, buckets and
	// objects, databases, topics and messages, images, and the same addresses when they are
	// still free (the registry's must be: image references name it).
	Dir string
	// Buckets are created in S3 (existing ones are kept).
	Buckets []string
	// Topics are created in Kafka up front; empty means {DefaultTopic}. Other topics are
	// created on first use.
	Topics []string
	// Users are the fake auth2 server's accounts and tokens.
	Users []auth2.User
	// RegistryOptions configure the registry (for example WithBlobTamper).
	RegistryOptions []RegistryOption
}

// Stack is the whole embedded stack. All fields are set once Start returns.
type Stack struct {
	S3       *S3
	Mongo    *Mongo
	Kafka    *Kafka
	Registry *Registry
	Auth     *auth2.Server
}

// Start starts every component: S3 (in a child process, so the program must call Main
// first), Mongo, Kafka, the registry and auth2. If one fails it closes those already
// started. ctx bounds the start only; the stack runs until Close.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	if opts.Dir == "" {
		return nil, errors.New("start devstack: Options.Dir is empty")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("start devstack: %w", err)
	}
	// auth2.New panics on a bad user: check them here and return an error instead.
	for _, u := range opts.Users {
		if err := auth2.ValidateUserName(u.Name); err != nil {
			return nil, fmt.Errorf("start devstack: user: %w", err)
		}
		if strings.TrimSpace(u.Token) == "" {
			return nil, fmt.Errorf("start devstack: user %s: empty token", u.Name)
		}
	}
	topics := opts.Topics
	if len(topics) == 0 {
		topics = []string{DefaultTopic}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("start devstack: %w", err)
	}
	prev, err := readAddrs(dir)
	if err != nil {
		return nil, fmt.Errorf("start devstack: %w", err)
	}

	// The S3 child takes longest to come up: start it first and the rest meanwhile.
	type s3Result struct {
		s   *S3
		err error
	}
	s3Ch := make(chan s3Result, 1)
	go func() {
		s, err := StartS3(ctx, filepath.Join(dir, "s3"), At(prev.S3))
		if err == nil {
			for _, b := range opts.Buckets {
				if err = s.CreateBucket(ctx, b); err != nil {
					err = errors.Join(err, s.Close())
					s = nil
					break
				}
			}
		}
		s3Ch <- s3Result{s, err}
	}()

	st := &Stack{}
	regOpts := []RegistryOption{WithStorage(filepath.Join(dir, "registry"))}
	if prev.Registry != "" {
		regOpts = append(regOpts, WithAddr(prev.Registry))
	}
	err = st.startInProcess(ctx, dir, prev, topics, opts.Users, append(regOpts, opts.RegistryOptions...))
	r := <-s3Ch
	st.S3 = r.s
	if err = errors.Join(err, r.err); err != nil {
		return nil, errors.Join(fmt.Errorf("start devstack: %w", err), st.Close())
	}
	now := addrs{
		S3:       strings.TrimPrefix(st.S3.Endpoint, "http://"),
		Mongo:    strings.TrimSuffix(strings.TrimPrefix(st.Mongo.URI(), "mongodb://"), "/"),
		Kafka:    st.Kafka.Brokers()[0],
		Registry: st.Registry.Host(),
	}
	if err := writeAddrs(dir, now); err != nil {
		return nil, errors.Join(fmt.Errorf("start devstack: save addresses: %w", err), st.Close())
	}
	return st, nil
}

// startInProcess starts the components that live in this process, stopping at the first
// failure; Start closes whatever was set.
func (st *Stack) startInProcess(ctx context.Context, dir string, prev addrs, topics []string, users []auth2.User, regOpts []RegistryOption) error {
	var err error
	if st.Mongo, err = StartMongo(ctx, filepath.Join(dir, "mongo"), At(prev.Mongo)); err != nil {
		return err
	}
	if st.Kafka, err = StartKafkaIn(ctx, filepath.Join(dir, "kafka"), topics, At(prev.Kafka)); err != nil {
		return err
	}
	if st.Registry, err = StartRegistry(ctx, regOpts...); err != nil {
		return err
	}
	auth := auth2.New(users...)
	// auth2 serves until its ctx is done or Close: detach it from the start-only ctx.
	if err := auth.Start(context.WithoutCancel(ctx)); err != nil {
		_ = auth.Close() // nothing is serving; Close only marks it closed
		return fmt.Errorf("start auth2: %w", err)
	}
	st.Auth = auth
	return nil
}

// Close stops every component that is running and returns their errors joined. It is
// idempotent.
func (st *Stack) Close() error {
	var errs []error
	if st.Auth != nil {
		errs = append(errs, st.Auth.Close())
	}
	if st.Registry != nil {
		errs = append(errs, st.Registry.Close())
	}
	if st.Kafka != nil {
		errs = append(errs, st.Kafka.Close())
	}
	if st.Mongo != nil {
		errs = append(errs, st.Mongo.Close())
	}
	if st.S3 != nil {
		errs = append(errs, st.S3.Close())
	}
	return errors.Join(errs...)
}

// TestStack starts a Stack (in tb.TempDir when opts.Dir is empty) and closes it on
// tb.Cleanup; it calls tb.Fatal on error. The test binary's TestMain must call Main.
func TestStack(tb testing.TB, opts Options) *Stack {
	tb.Helper()
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	st, err := Start(tb.Context(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := st.Close(); err != nil {
			tb.Error(err)
		}
	})
	return st
}
