package api

import (
	"io"
	"log/slog"
	"testing"
)

// TestDocumentBuilds builds the OpenAPI document without the embedded stack.
func TestDocumentBuilds(t *testing.T) {
	s := New(Config{Version: "1"}, nil, Jobs{}, nil, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, err := s.Document(); err != nil {
		t.Fatal(err)
	}
}
