package store_test

import (
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
)

// BenchmarkGetJob measures one job read (with its job_input conversion) through the embedded
// FerretDB; real MongoDB is faster, so this is an upper bound of the store's own cost.
func BenchmarkGetJob(b *testing.B) {
	s, _ := newStore(b)
	if err := s.CreateJob(b.Context(), fullJob(), nil); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.GetJob(b.Context(), "full"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTransitionJob measures one conditional transition (one FindOneAndUpdate).
func BenchmarkTransitionJob(b *testing.B) {
	s, _ := newStore(b)
	i := 0
	for b.Loop() {
		b.StopTimer()
		id := fmt.Sprintf("j%d", i)
		i++
		if err := s.CreateJob(b.Context(), newJob(id, "u", "kbase", t0), nil); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := s.TransitionJob(b.Context(), id, []job.State{job.Created},
			jobs.Transition{State: job.DownloadSubmitted, Time: time.Now()}, jobs.JobUpdate{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListJobsPage measures one page of the dashboard's job list (51 jobs: a page and
// one more to know whether another follows) with 10,000 jobs in the store, as GET /jobs asks
// for it: a user's newest, filtered by state or image, and a page deep in the history (the
// keyset "before" of a later page). Each is served by the list index (joblist.go), so the cost
// does not grow with the number of jobs.
func BenchmarkListJobsPage(b *testing.B) {
	s, db := newStore(b)
	const n = 10000
	// One job written by the store, copied n times straight into the collection (inserting
	// them one by one through FerretDB takes many minutes): the stored layout exactly.
	if err := s.CreateJob(b.Context(), newJob("template", "user0", "kbase", t0), nil); err != nil {
		b.Fatal(err)
	}
	var tmpl bson.M
	if err := db.Collection("jobs").FindOneAndDelete(b.Context(), bson.D{{Key: "id", Value: "template"}}).Decode(&tmpl); err != nil {
		b.Fatal(err)
	}
	delete(tmpl, "_id")
	docs := make([]any, 0, n)
	for i := range n {
		d := bson.M{}
		for k, v := range tmpl {
			d[k] = v
		}
		img := bson.M{}
		for _, e := range tmpl["image"].(bson.D) {
			img[e.Key] = e.Value
		}
		if i%3 == 0 {
			img["name"] = "ghcr.io/kbase/other"
		}
		d["image"] = img
		d["id"], d["user"] = fmt.Sprintf("j%05d", i), fmt.Sprintf("user%d", i%10)
		d["_id"] = d["id"]
		d["_update_time"] = t0.Add(time.Duration(i) * time.Second)
		if i%7 == 0 {
			d["state"] = string(job.Complete)
		}
		docs = append(docs, d)
	}
	start := time.Now()
	for i := 0; i < n; i += 1000 {
		if _, err := db.Collection("jobs").InsertMany(b.Context(), docs[i:i+1000]); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("%d jobs inserted in %s", n, time.Since(start).Round(time.Millisecond))
	// The migration that lists a database's existing jobs (joblist.go).
	start = time.Now()
	if _, err := s.RebuildJobList(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d jobs listed in %s", n, time.Since(start).Round(time.Millisecond))
	for _, c := range []struct {
		name string
		f    jobs.ListFilter
	}{
		{"user", jobs.ListFilter{User: "user3", Limit: 51}},
		{"user and state", jobs.ListFilter{User: "user3", State: job.Complete, Limit: 51}},
		{"user and image", jobs.ListFilter{User: "user3", ImageName: "ghcr.io/kbase/other", Limit: 51}},
		{"user deep page", jobs.ListFilter{User: "user3", Before: t0.Add(n / 2 * time.Second), Limit: 51}},
		{"all users and image", jobs.ListFilter{ImageName: "ghcr.io/kbase/other", Limit: 51}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				js, err := s.ListJobs(b.Context(), c.f)
				if err != nil {
					b.Fatal(err)
				}
				if len(js) != 51 {
					b.Fatalf("%d jobs, want a full page", len(js))
				}
			}
		})
	}
}
