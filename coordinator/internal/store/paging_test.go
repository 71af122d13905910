package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/store"
)

// keysetCursor is where a page of the job list starts: jobs changed at or before time, minus
// seen (the jobs earlier pages showed that were changed in that same millisecond).
type keysetCursor struct {
	time time.Time
	seen map[string]bool
}

// walkPages lists user's jobs page by page as GET /jobs documents it and the dashboard does:
// the next page asks for jobs before the last job's time plus one millisecond, with a limit
// raised by the jobs already seen in that millisecond, and drops those. It returns the pages.
func walkPages(t *testing.T, s *store.Store, user string, size int) [][]*jobs.Job {
	t.Helper()
	var pages [][]*jobs.Job
	var cur *keysetCursor
	for len(pages) < 100 {
		f := jobs.ListFilter{User: user, Limit: size + 1}
		if cur != nil {
			f.Before = cur.time.Add(time.Millisecond)
			f.Limit += len(cur.seen)
		}
		got, err := s.ListJobs(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		var rest []*jobs.Job
		for _, j := range got {
			if cur == nil || !cur.seen[j.ID] {
				rest = append(rest, j)
			}
		}
		page := rest[:min(size, len(rest))]
		pages = append(pages, page)
		if len(rest) <= size {
			return pages
		}
		last := lastTime(page[len(page)-1])
		next := &keysetCursor{time: last, seen: map[string]bool{}}
		if cur != nil && cur.time.Equal(last) {
			next.seen = cur.seen
		}
		for _, j := range page {
			if lastTime(j).Equal(last) {
				next.seen[j.ID] = true
			}
		}
		cur = next
	}
	t.Fatal("the pages never end")
	return nil
}

// lastTime is a job's last transition time: its place in the list.
func lastTime(j *jobs.Job) time.Time { return j.Transitions[len(j.Transitions)-1].Time }

// TestListJobsKeysetPaging pages through jobs many of which changed in the same millisecond:
// one millisecond holds more than two pages of jobs, another straddles a page boundary. Every
// job is listed exactly once, newest first: ties are neither skipped nor repeated.
func TestListJobsKeysetPaging(t *testing.T) {
	s, _ := newStore(t)
	const size = 10
	var times []time.Time
	at := t0
	add := func(n int, step time.Duration) {
		for range n {
			at = at.Add(-step)
			times = append(times, at)
		}
	}
	// A millisecond apart, but for the ties: a page that ends in a millisecond is followed by
	// a job of the very next one, which the next page's "before" must leave out.
	add(5, time.Millisecond)
	add(1, time.Millisecond)
	add(22, 0) // positions 6-28, one millisecond: the end of page 1, all of page 2, most of page 3
	add(10, time.Millisecond)
	add(1, time.Millisecond)
	add(3, 0) // positions 39-42, one millisecond: across the boundary of pages 4 and 5
	add(15, time.Millisecond)
	// Created in an order unrelated to their times, by the store as the service does.
	ids := make([]string, len(times))
	for i := range times {
		k := (i * 7) % len(times) // 7 and 57 are coprime: every index once
		ids[k] = fmt.Sprintf("j%02d", k)
		j := newJob(ids[k], "alice", "kbase", times[k])
		if err := s.CreateJob(t.Context(), j, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateJob(t.Context(), newJob("other", "bob", "kbase", t0), nil); err != nil {
		t.Fatal(err)
	}

	pages := walkPages(t, s, "alice", size)
	var sizes []int
	count := map[string]int{}
	var listed []*jobs.Job
	for _, p := range pages {
		sizes = append(sizes, len(p))
		for _, j := range p {
			count[j.ID]++
			listed = append(listed, j)
		}
	}
	if want := []int{10, 10, 10, 10, 10, 7}; fmt.Sprint(sizes) != fmt.Sprint(want) {
		t.Errorf("page sizes %v, want %v", sizes, want)
	}
	for i, id := range ids {
		if count[id] != 1 {
			t.Errorf("job %s (changed at %s) listed %d times", id, times[i].Format(time.RFC3339Nano), count[id])
		}
	}
	if len(listed) != len(ids) {
		t.Errorf("%d jobs listed, %d stored", len(listed), len(ids))
	}
	for i := 1; i < len(listed); i++ {
		if lastTime(listed[i]).After(lastTime(listed[i-1])) {
			t.Errorf("%s (%s) is listed after the older %s (%s)", listed[i].ID, lastTime(listed[i]), listed[i-1].ID, lastTime(listed[i-1]))
		}
	}

	// The fixture does test ties: paging on the last time alone (before = that time, no
	// millisecond added, nothing dropped) loses the rest of each millisecond a page ends in.
	naive := 0
	f := jobs.ListFilter{User: "alice", Limit: size}
	for range len(ids) {
		got, err := s.ListJobs(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		naive += len(got)
		if len(got) < size {
			break
		}
		f.Before = lastTime(got[len(got)-1])
	}
	if naive >= len(ids) {
		t.Errorf("paging without the tie handling listed %d rows for %d jobs, so no page ends inside a millisecond", naive, len(ids))
	}
}
