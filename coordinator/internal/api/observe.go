package api

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Observer records request metrics; metrics.Metrics implements it.
type Observer interface {
	// ObserveRequest is called once per request after it was served. route is the matched
	// route pattern without its method ("/jobs/{job_id}"), or "unmatched"; streaming is true for
	// websockets and event streams, whose duration is their whole session.
	ObserveRequest(route, method string, status int, d time.Duration, streaming bool)
}

// unmatchedRoute labels requests no route served (404s, 405s): raw paths would give metrics
// an unbounded label.
const unmatchedRoute = "unmatched"

// routeLabel is the route pattern ServeMux matched for r, without its method.
func routeLabel(r *http.Request) string {
	p := r.Pattern
	if _, path, ok := strings.Cut(p, " "); ok {
		p = path
	}
	switch p {
	case "", "/":
		return unmatchedRoute
	case "/{$}":
		return "/"
	}
	return p
}

// RequestID returns the ID the API gave the request that ctx belongs to ("" outside one).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// LogHandler wraps h so that every record logged with the context of an API request carries
// its request_id: log lines of the jobs service, the store and the rest, made while serving
// a request, can then be matched with it (and with the request_id of a CTS error). Wrapping
// twice adds the field once.
func LogHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(requestIDHandler); ok {
		return h
	}
	return requestIDHandler{h}
}

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r = r.Clone()
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}
