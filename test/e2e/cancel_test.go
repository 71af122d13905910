package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/test/testsite"
)

// gate is an S3 proxy for the agents that holds the first request matching a rule until it is
// opened, so a test can act while a transfer is under way. SigV4 stays valid: the proxy keeps
// the Host header the agent signed.
type gate struct {
	match   func(*http.Request) bool
	reached chan struct{}
	open    chan struct{}
	once    sync.Once
}

func newGate(match func(*http.Request) bool) *gate {
	return &gate{match: match, reached: make(chan struct{}), open: make(chan struct{})}
}

func (g *gate) handler(target string) http.Handler {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.match(r) {
			g.once.Do(func() { close(g.reached) })
			select {
			case <-g.open:
			case <-r.Context().Done():
				return
			}
		}
		rp.ServeHTTP(w, r)
	})
}

// startGatedCondorSite starts an HTCondor dev site whose agents reach S3 through g.
func startGatedCondorSite(t *testing.T, g *gate) *testsite.Site {
	t.Helper()
	var proxy *httptest.Server
	t.Cleanup(func() {
		if proxy != nil {
			proxy.Close()
		}
	})
	return startSite(t, testsite.Options{HTCondor: true, Configure: func(cfg *app.Config) {
		proxy = httptest.NewServer(g.handler(cfg.S3.Endpoint))
		cfg.S3.WorkerEndpoint = proxy.URL
		cfg.Reconcile.Interval = time.Second
	}})
}

// cancelWhileGated submits a job, waits until its agent is held at the gate, cancels it, then
// opens the gate: the job must end canceled, without recorded outputs or open multipart
// uploads, and (wantNoOutputs) without any object in the output folder.
func cancelWhileGated(t *testing.T, g *gate, args []any, wantNoOutputs bool) {
	t.Helper()
	s := startGatedCondorSite(t, g)
	image := s.RegisterTool(t, testsite.Binary(t, testsite.TestToolPkg), "1")
	id := submitArgs(t, s, image, args)
	select {
	case <-g.reached:
	case <-time.After(time.Minute):
		t.Fatalf("the agent never reached the gate; job %v", s.AdminJob(t, id)["state"])
	}
	if err := s.API.Do(context.Background(), "PUT", "/jobs/"+id+"/cancel", s.Demo.UserToken, nil, nil); err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, s, id)
	if j["state"] != "canceled" {
		close(g.open)
		t.Fatalf("job ended %v (%v), want canceled", j["state"], j["error"])
	}
	if _, ok := j["outputs"]; ok {
		t.Errorf("a canceled job has outputs: %v", j["outputs"])
	}
	// The containers are ended with the job.
	deadline := time.Now().Add(time.Minute)
	for {
		var c map[string]any
		if err := s.API.Do(context.Background(), "GET", "/admin/jobs/"+id+"/container/0", s.Demo.AdminToken, nil, &c); err != nil {
			t.Fatal(err)
		}
		if c["state"] == "error" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container still %v a minute after the cancel", c["state"])
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(g.open)
	if wantNoOutputs {
		time.Sleep(500 * time.Millisecond)
		if keys := listKeys(t, s.Env.Stack.S3.Client(), devmode.DataBucket, "e2e/output/"); len(keys) != 0 {
			t.Errorf("outputs written after the cancel: %v", keys)
		}
	}
	// No multipart upload is left open in any case.
	mp, err := s.Env.Stack.S3.Client().ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(devmode.DataBucket)})
	if err != nil {
		t.Fatal(err)
	}
	if len(mp.Uploads) != 0 {
		t.Errorf("multipart uploads left open: %d", len(mp.Uploads))
	}
}

// TestHTCondorCancelDuringDownload cancels while the agent downloads its input.
func TestHTCondorCancelDuringDownload(t *testing.T) {
	testsite.RequireEnv(t)
	g := newGate(func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/e2e/in/")
	})
	cancelWhileGated(t, g, []any{"copy"}, true)
}

// TestHTCondorCancelDuringUpload cancels while the agent uploads the container's outputs.
func TestHTCondorCancelDuringUpload(t *testing.T) {
	testsite.RequireEnv(t)
	g := newGate(func(r *http.Request) bool {
		return (r.Method == http.MethodPut || r.Method == http.MethodPost) && strings.Contains(r.URL.Path, "/e2e/output/")
	})
	// An upload request already sent when the cancel arrives may still be stored by S3 (here:
	// the gate releases it): a canceled job's output folder can hold such objects, but the job
	// records no outputs and leaves no multipart upload open.
	cancelWhileGated(t, g, []any{"copy"}, false)
}
