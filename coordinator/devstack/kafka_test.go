package devstack_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kbase/cts/coordinator/devstack"
)

func writer(k *devstack.Kafka, topic string) *kafka.Writer {
	return &kafka.Writer{
		Addr:                   kafka.TCP(k.Brokers()...),
		Topic:                  topic,
		Transport:              &kafka.Transport{}, // the shared default caches metadata
		BatchTimeout:           5 * time.Millisecond,
		RequiredAcks:           kafka.RequireAll,
		AllowAutoTopicCreation: true,
	}
}

func readN(t *testing.T, r *kafka.Reader, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	var got []string
	for range n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("after %d messages: %v", len(got), err)
		}
		got = append(got, string(m.Value))
	}
	return got
}

func TestKafka(t *testing.T) {
	k := devstack.TestKafka(t, "cts-jobs")
	if len(k.Brokers()) != 1 {
		t.Fatalf("brokers = %v, want one", k.Brokers())
	}
	// MaxWait: a Reader's Close waits for its in-flight fetch, which the broker holds for up
	// to MaxWait (default 10 s).
	const maxWait = 100 * time.Millisecond
	tests := []struct {
		name   string
		topic  string
		reader func(topic string) kafka.ReaderConfig
	}{
		{"seeded topic, group reader", "cts-jobs", func(topic string) kafka.ReaderConfig {
			return kafka.ReaderConfig{Brokers: k.Brokers(), Topic: topic, GroupID: "g1", StartOffset: kafka.FirstOffset, MaxWait: maxWait}
		}},
		{"auto-created topic, partition reader", "auto-created", func(topic string) kafka.ReaderConfig {
			return kafka.ReaderConfig{Brokers: k.Brokers(), Topic: topic, Partition: 0, MaxWait: maxWait}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := writer(k, tc.topic)
			defer w.Close()
			var want []kafka.Message
			for i := range 5 {
				want = append(want, kafka.Message{Key: []byte("job"), Value: fmt.Appendf(nil, "m%d", i)})
			}
			if err := w.WriteMessages(t.Context(), want...); err != nil {
				t.Fatal(err)
			}
			r := kafka.NewReader(tc.reader(tc.topic))
			defer r.Close()
			got := readN(t, r, len(want))
			for i := range want {
				if got[i] != string(want[i].Value) {
					t.Fatalf("messages = %q, want m0..m4 in order", got)
				}
			}
		})
	}
}

func TestKafkaClose(t *testing.T) {
	k, err := devstack.StartKafka(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	addr := k.Brokers()[0]
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if err := k.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		_ = c.Close()
		t.Fatal("broker still accepts connections after Close")
	}
}
