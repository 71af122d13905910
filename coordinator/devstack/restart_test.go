package devstack_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/segmentio/kafka-go"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/devstack"
)

// TestRestartKeepsState stops a stack and starts it again on its folder: the S3 objects (and
// the credentials that own the buckets), the MongoDB documents, the Kafka messages and the
// registry's images are all there, at the same addresses.
func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	opts := devstack.Options{Dir: dir, Buckets: []string{"cts-data"}}
	st, err := devstack.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.S3.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("cts-data"), Key: aws.String("a/b.txt"),
		Body: bytes.NewReader([]byte("kept"))}); err != nil {
		t.Fatal(err)
	}
	mc, err := mongo.Connect(options.Client().ApplyURI(st.Mongo.URI()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mc.Database("d").Collection("c").InsertOne(ctx, bson.M{"_id": "x", "v": 1}); err != nil {
		t.Fatal(err)
	}
	_ = mc.Disconnect(ctx)
	w := &kafka.Writer{Addr: kafka.TCP(st.Kafka.Brokers()...), Topic: devstack.DefaultTopic, Transport: &kafka.Transport{},
		BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireAll}
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: []byte("kept")}); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	ref, img := pushRandom(t, st.Registry)
	digest, _ := img.Digest()
	before := []string{st.S3.Endpoint, st.Mongo.URI(), st.Kafka.Brokers()[0], st.Registry.Host(), st.S3.AccessKey}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st, err = devstack.Start(ctx, opts)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	after := []string{st.S3.Endpoint, st.Mongo.URI(), st.Kafka.Brokers()[0], st.Registry.Host(), st.S3.AccessKey}
	for i := range before {
		if before[i] != after[i] {
			t.Errorf("address or key %d changed: %s, then %s", i, before[i], after[i])
		}
	}
	obj, err := st.S3.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("cts-data"), Key: aws.String("a/b.txt")})
	if err != nil {
		t.Fatalf("object after restart: %v", err)
	}
	b, _ := io.ReadAll(obj.Body)
	obj.Body.Close()
	if string(b) != "kept" {
		t.Fatalf("object holds %q", b)
	}
	mc, err = mongo.Connect(options.Client().ApplyURI(st.Mongo.URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Disconnect(ctx)
	var doc bson.M
	if err := mc.Database("d").Collection("c").FindOne(ctx, bson.M{"_id": "x"}).Decode(&doc); err != nil {
		t.Fatalf("document after restart: %v", err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: st.Kafka.Brokers(), Topic: devstack.DefaultTopic, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	m, err := r.ReadMessage(rctx)
	if err != nil || string(m.Value) != "kept" {
		t.Fatalf("kafka message after restart: %q, %v", m.Value, err)
	}
	desc, err := remote.Head(ref, remote.WithContext(ctx))
	if err != nil || desc.Digest != digest {
		t.Fatalf("image after restart: %v, %v (want %s)", desc, err, digest)
	}
	if err := pullToLayout(t, ref); err != nil {
		t.Fatalf("pull after restart: %v", err)
	}
	byDigest, _ := name.ParseReference(st.Registry.Host() + "/test/img@" + digest.String())
	if _, err := remote.Head(byDigest, remote.WithContext(ctx)); err != nil {
		t.Fatalf("image by digest after restart: %v", err)
	}
}

// TestRegistryAddressTaken: a registry whose address is taken refuses to start on another
// (its images' references name the address) and says what to do.
func TestRegistryAddressTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = devstack.StartRegistry(t.Context(), devstack.WithStorage(t.TempDir()), devstack.WithAddr(ln.Addr().String()))
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("is in use by another program, and the registered images name this address")) {
		t.Fatalf("err = %v", err)
	}
}
