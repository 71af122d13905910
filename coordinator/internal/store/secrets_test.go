package store_test

import (
	"bytes"
	"sync"
	"testing"
)

// TestAgentCredentialKey checks every replica gets the same key: the first stores it, the
// others read it, also when they start at the same moment.
func TestAgentCredentialKey(t *testing.T) {
	s, _ := newStore(t)
	keys := make([][]byte, 4)
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() { keys[i], errs[i] = s.AgentCredentialKey(t.Context(), 32) })
	}
	wg.Wait()
	for i := range keys {
		if errs[i] != nil || len(keys[i]) != 32 || !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("call %d: %x, %v; first %x", i, keys[i], errs[i], keys[0])
		}
	}
	again, err := s.AgentCredentialKey(t.Context(), 32)
	if err != nil || !bytes.Equal(again, keys[0]) {
		t.Fatalf("later call: %x, %v", again, err)
	}
	if _, err := s.AgentCredentialKey(t.Context(), 64); err == nil {
		t.Fatal("a shorter stored key was accepted for a longer size")
	}
}
