package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// collSecrets holds the coordinator's own shared secrets (the agent credential key), one
// document per secret: {_id: name, key: bytes}.
const collSecrets = "secrets"

// agentCredentialKey is the _id of the agent credential key.
const agentCredentialKey = "agent_credential_key"

// AgentCredentialKey returns the key every coordinator replica signs agent credentials with:
// the one in MongoDB, or a new random one of size bytes that it stores there first. Replicas
// starting at the same time agree (the first insert wins; the others read it). Whoever can
// read this collection can mint agent credentials: give the MongoDB user of anything but the
// coordinator no access to it.
func (s *Store) AgentCredentialKey(ctx context.Context, size int) ([]byte, error) {
	c := s.jobs.Database().Collection(collSecrets)
	key := make([]byte, size)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("agent credential key: %w", err)
	}
	_, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: agentCredentialKey}, {Key: "key", Value: key}})
	if err != nil && !mongo.IsDuplicateKeyError(err) && !isDuplicateID(err) {
		return nil, fmt.Errorf("agent credential key: store: %w", err)
	}
	var doc struct {
		Key []byte `bson:"key"`
	}
	if err := c.FindOne(ctx, bson.D{{Key: "_id", Value: agentCredentialKey}}).Decode(&doc); err != nil {
		return nil, fmt.Errorf("agent credential key: read: %w", err)
	}
	if len(doc.Key) < size {
		return nil, fmt.Errorf("agent credential key: the stored key has %d bytes, want at least %d", len(doc.Key), size)
	}
	return doc.Key, nil
}

// isDuplicateID tells a duplicate _id from other write errors on servers whose duplicate key
// error the driver does not classify (FerretDB answers some with another code).
func isDuplicateID(err error) bool {
	var we mongo.WriteException
	if errors.As(err, &we) {
		for _, e := range we.WriteErrors {
			if e.Code == 11000 {
				return true
			}
		}
	}
	return false
}
