package devstack

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Kafka is an in-memory Kafka cluster (franz-go's kfake) with one broker on a 127.0.0.1 port
// outside the kernel's ephemeral range. Topics are created automatically on first use, with
// one partition (as a Kafka broker's default num.partitions).
//
// kfake is pinned in go.mod together with github.com/twmb/franz-go v1.22.3: kfake's own
// go.mod names an older franz-go that does not compile with it, so never let `go get -u` or
// `go mod tidy` move either one alone.
//
// For segmentio/kafka-go clients (true of a real broker too, but felt in tests): give each
// Writer its own &kafka.Transport{} (the shared default caches topic metadata for seconds)
// and a small BatchTimeout (the default is 1 s); give a Reader a small MaxWait, since its
// Close waits for the in-flight fetch that the broker holds for up to MaxWait (default 10 s).
type Kafka struct {
	c         *kfake.Cluster
	closeOnce sync.Once
}

// StartKafka starts an in-memory cluster with topics created up front (one partition each).
// ctx is only checked: kfake starts synchronously.
func StartKafka(ctx context.Context, topics ...string) (*Kafka, error) {
	return StartKafkaIn(ctx, "", topics)
}

// StartKafkaIn is StartKafka keeping the cluster's state (topics, messages, committed
// offsets) in dir, so that a restart on the same dir finds it again; "" keeps it in memory.
// The broker listens on the At address when it is free, else on a free port.
func StartKafkaIn(ctx context.Context, dir string, topics []string, opts ...Option) (*Kafka, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start kafka: %w", err)
	}
	o := startOpts(opts)
	kopts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(1),
	}
	if len(topics) > 0 {
		kopts = append(kopts, kfake.SeedTopics(1, topics...))
	}
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, fmt.Errorf("start kafka: %w", err)
		}
		kopts = append(kopts, kfake.DataDir(abs))
	}
	// The broker's listener is bound here and handed to kfake, so the address is known and
	// held before the cluster starts.
	ln, err := listenPreferred(o.addr)
	if err != nil {
		return nil, fmt.Errorf("start kafka: %w", err)
	}
	var once sync.Once
	listen := func(network, address string) (net.Listener, error) {
		var given net.Listener
		once.Do(func() { given = ln })
		if given != nil {
			return given, nil
		}
		return net.Listen(network, address)
	}
	kopts = append(kopts, kfake.Ports(ln.Addr().(*net.TCPAddr).Port), kfake.ListenFn(listen))
	c, err := kfake.NewCluster(kopts...)
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("start kafka: %w", err)
	}
	return &Kafka{c: c}, nil
}

// Brokers returns the bootstrap addresses ("127.0.0.1:PORT").
func (k *Kafka) Brokers() []string { return k.c.ListenAddrs() }

// Close stops the cluster; the messages are gone. It is idempotent and always returns nil.
func (k *Kafka) Close() error {
	k.closeOnce.Do(k.c.Close)
	return nil
}

// TestKafka starts a Kafka with the given topics and closes it on tb.Cleanup; it calls
// tb.Fatal on error.
func TestKafka(tb testing.TB, topics ...string) *Kafka {
	tb.Helper()
	k, err := StartKafka(tb.Context(), topics...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = k.Close() })
	return k
}
