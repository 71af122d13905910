package ui

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/coordinator/devstack/auth2"
	"github.com/kbase/cts/test/demo"
	"github.com/kbase/cts/test/testsite"
)

// jobWait bounds a job's run on a loaded 2-core machine.
const jobWait = 3 * time.Minute

func token() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}

// site is the dev site of a suite, with the test image pushed (not yet registered), two input
// files and a second plain user, bob.
type site struct {
	*testsite.Site
	image    string // the test image's reference
	bobToken string // a second plain user
}

func startSite(t *testing.T) *site {
	t.Helper()
	s := testsite.Start(t, testsite.Options{Configure: func(c *app.Config) {
		// The suites pin their container runtime.
		if env, ok := c.Sites[0].PluginConfig["env"].(map[string]string); ok {
			env["CTS_AGENT_RUNTIME"] = "oci"
		}
	}})
	ref, _ := s.PushTool(t, testsite.Binary(t, "./test/ui/uitool"), "ui")
	s.PutInput(t, "ui/in/a.txt", []byte("alpha\n"))
	s.PutInput(t, "ui/in/b.txt", []byte("beta beta\n"))
	bob := token()
	s.Env.Stack.Auth.AddUser(auth2.User{Name: "cts_bob", Token: bob, CustomRoles: []string{"KBASE_STAFF"}})
	return &site{Site: s, image: ref, bobToken: bob}
}

// submit submits a job through the API and returns its ID.
func (s *site) submit(t *testing.T, tok string, containers int, inputs []string, args ...any) string {
	t.Helper()
	body := map[string]any{
		"cluster": devmode.SiteName, "image": s.image, "input_files": inputs, "num_containers": containers,
		"output_dir": devmode.DataBucket + "/ui/api-out/", "runtime": "PT10M", "memory": "100MB",
		"params": map[string]any{"args": args},
	}
	var out struct {
		JobID string `json:"job_id"`
	}
	if err := s.API.Do(t.Context(), "POST", "/jobs", tok, body, &out); err != nil {
		t.Fatalf("submit: %v", err)
	}
	return out.JobID
}

// job is the user's view of job id.
func (s *site) job(t *testing.T, id string) map[string]any {
	t.Helper()
	var j map[string]any
	if err := s.API.Do(t.Context(), "GET", "/jobs/"+id, s.Demo.UserToken, nil, &j); err != nil {
		t.Fatal(err)
	}
	return j
}

// seedJobs copies the stored document of job template into the jobs collection once per time
// of times (newest first or not), for user, each a complete job with one transition at that
// time, and returns their IDs in the order of times. Straight into the collection, as the
// store's benchmark does: the stored layout exactly, without running hundreds of containers.
func (s *site) seedJobs(t *testing.T, template, user string, times []time.Time) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c, err := mongo.Connect(options.Client().ApplyURI(s.Env.Stack.Mongo.URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Disconnect(context.Background()) }()
	coll := c.Database(s.Env.Config.Mongo.Database).Collection("jobs")
	var tmpl bson.M
	if err := coll.FindOne(ctx, bson.D{{Key: "id", Value: template}}).Decode(&tmpl); err != nil {
		t.Fatalf("read job %s: %v", template, err)
	}
	delete(tmpl, "_id")
	trans, _ := tmpl["transition_times"].(bson.A)
	if len(trans) == 0 {
		t.Fatalf("job %s has no transitions: %v", template, tmpl)
	}
	last, _ := trans[len(trans)-1].(bson.D)
	ids := make([]string, len(times))
	docs := make([]any, len(times))
	for i, at := range times {
		ids[i] = fmt.Sprintf("%s-%03d", user, i)
		d := bson.M{}
		for k, v := range tmpl {
			d[k] = v
		}
		tr := bson.D{}
		for _, e := range last {
			switch e.Key {
			case "time":
				e.Value = at
			case "trans_id":
				e.Value = ids[i] + "-t"
			case "notif_sent":
				e.Value = true
			}
			tr = append(tr, e)
		}
		d["_id"], d["id"], d["user"], d["_update_time"], d["transition_times"] = ids[i], ids[i], user, at, bson.A{tr}
		docs[i] = d
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatalf("seed %d jobs: %v", len(docs), err)
	}
	// Written behind the store's back: the job list learns of them as after a restore.
	if err := s.Env.RebuildJobList(ctx); err != nil {
		t.Fatal(err)
	}
	return ids
}

// tarGz is a .tar.gz holding files.
func tarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// brokenRefdata registers reference data while the site's refdata folder is missing (a file
// system not mounted): its staging there fails. It returns the record's ID and the function
// that puts the folder back (also called when t ends).
func (s *site) brokenRefdata(t *testing.T) (id string, repair func()) {
	t.Helper()
	crc, err := demo.PutWithCRC(t.Context(), s.Env.Stack.S3.Client(), devmode.DataBucket, "ui/refdata/db.tar.gz",
		tarGz(t, map[string]string{"db/genes.txt": "gene1\ngene2\n"}))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.Env.Dir, "refdata")
	if err := os.Rename(dir, dir+".away"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	repair = func() {
		once.Do(func() {
			if err := os.Rename(dir+".away", dir); err != nil {
				t.Errorf("put the refdata folder back: %v", err)
			}
		})
	}
	t.Cleanup(repair)
	var rd struct {
		ID string `json:"id"`
	}
	q := url.Values{"crc64nvme": {crc}, "unpack": {"true"}}
	if err := s.API.Do(t.Context(), "POST", "/admin/refdata/cts-data/ui/refdata/db.tar.gz?"+q.Encode(), s.Demo.AdminToken, nil, &rd); err != nil {
		t.Fatalf("register refdata: %v", err)
	}
	return rd.ID, repair
}

// waitRefdata polls the staging of refdata id at the dev site until it is in state; another
// end state fails t.
func (s *site) waitRefdata(t *testing.T, id, state string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(jobWait)
	for {
		var rd map[string]any
		if err := s.API.Do(t.Context(), "GET", "/admin/refdata/"+id, s.Demo.AdminToken, nil, &rd); err != nil {
			t.Fatal(err)
		}
		st := refdataStatus(rd)
		got, _ := st["state"].(string)
		if got == state {
			return st
		}
		if (got == "complete" || got == "error") || time.Now().After(deadline) {
			t.Fatalf("refdata %s is %q at %s, want %q: %v", id, got, devmode.SiteName, state, rd)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// refdataStatus is the dev site's status of a refdata record (nil when it has none).
func refdataStatus(rd map[string]any) map[string]any {
	sts, _ := rd["statuses"].([]any)
	for _, st := range sts {
		if m, _ := st.(map[string]any); m["cluster"] == devmode.SiteName {
			return m
		}
	}
	return nil
}
