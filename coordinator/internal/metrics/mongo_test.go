package metrics_test

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/coordinator/internal/metrics"
)

// TestMongoCheck checks the readiness probe against the embedded MongoDB (FerretDB).
func TestMongoCheck(t *testing.T) {
	mg := devstack.TestMongo(t)
	client, err := mongo.Connect(options.Client().ApplyURI(mg.URI()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(t.Context()) })
	if err := metrics.MongoCheck(client).Probe(t.Context()); err != nil {
		t.Fatal(err)
	}
}
