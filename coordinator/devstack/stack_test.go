package devstack_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/segmentio/kafka-go"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/coordinator/devstack/auth2"
)

func TestStack(t *testing.T) {
	start := time.Now()
	st := devstack.TestStack(t, devstack.Options{
		Buckets: []string{"cts-data"},
		Users:   []auth2.User{{Name: "alice", Token: "tok-alice", CustomRoles: []string{"KBASE_STAFF"}}},
	})
	t.Logf("stack started in %v", time.Since(start))
	ctx := t.Context()

	t.Run("s3 bucket", func(t *testing.T) {
		if _, err := st.S3.Client().HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("cts-data")}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("mongo", func(t *testing.T) {
		c, err := mongo.Connect(options.Client().ApplyURI(st.Mongo.URI()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Disconnect(ctx)
		if err := c.Ping(ctx, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("kafka default topic", func(t *testing.T) {
		conn, err := kafka.DialContext(ctx, "tcp", st.Kafka.Brokers()[0])
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		parts, err := conn.ReadPartitions(devstack.DefaultTopic)
		if err != nil || len(parts) != 1 {
			t.Fatalf("partitions of %s: %v, %v; want one", devstack.DefaultTopic, parts, err)
		}
	})
	t.Run("registry", func(t *testing.T) {
		resp, err := http.Get("http://" + st.Registry.Host() + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /v2/: %d", resp.StatusCode)
		}
	})
	t.Run("auth2 token", func(t *testing.T) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, st.Auth.URL()+"api/V2/token", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "tok-alice")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			User string `json:"user"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || body.User != "alice" {
			t.Fatalf("token lookup: status %d, user %q", resp.StatusCode, body.User)
		}
	})
	t.Run("close is idempotent", func(t *testing.T) {
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

func TestStartFailures(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts devstack.Options
	}{
		{"no dir", devstack.Options{}},
		{"bad user name", devstack.Options{Dir: t.TempDir(), Users: []auth2.User{{Name: "Bad Name", Token: "t"}}}},
		{"blank token", devstack.Options{Dir: t.TempDir(), Users: []auth2.User{{Name: "bob", Token: " "}}}},
		// Dir is a file: neither S3 nor Mongo can create its directory.
		{"dir is a file", devstack.Options{Dir: file}},
		// Everything starts, then the bucket is refused: all of it is closed again.
		{"bad bucket name", devstack.Options{Dir: t.TempDir(), Buckets: []string{"Not_A_Bucket"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := devstack.Start(t.Context(), tc.opts)
			if err == nil {
				_ = st.Close()
				t.Fatal("Start succeeded")
			}
			t.Log(err)
		})
	}
}

func BenchmarkStartClose(b *testing.B) {
	for b.Loop() {
		st, err := devstack.Start(b.Context(), devstack.Options{Dir: b.TempDir(), Buckets: []string{"cts-data"}})
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
