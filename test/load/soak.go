package load

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Soak runs the mixed soak for o.Soak: jobs are submitted continuously so that about o.Agents
// containers run at once (each for about a minute), a running job is canceled every 20 s, 5 %
// of the connected agents lose their connection every 30 s (and reconnect), and halfway
// through the coordinator is stopped gracefully and started again; with several replicas,
// the last one is killed (SIGKILL, as a crash) instead, and started again 20 s later, its
// agents reconnecting to the others through the balancer meanwhile. Then the submits stop,
// every job must end, and the report lists any that did not.
func Soak(ctx context.Context, o Options) (*Report, error) {
	rep := &Report{AgentsTarget: o.Agents, JobContainers: o.JobContainers, Replicas: o.Replicas, Stack: stackReport()}
	site, cleanup, err := startRunSite(ctx, o, SiteOptions{
		Inputs: o.JobContainers, Configure: o.Configure, Log: o.Log, Replicas: o.Replicas,
		Fleet: FleetConfig{LogInterval: o.LogInterval, RunFor: time.Minute},
	})
	if err != nil {
		return nil, err
	}
	defer cleanup()
	start := time.Now()
	end := start.Add(o.Soak)
	var (
		mu      sync.Mutex
		ids     []string
		lat     []time.Duration
		running = map[string]int{} // job → containers, until seen ended
	)
	submitted := 0
	sctx, stopSubmits := context.WithCancel(ctx)
	var wg sync.WaitGroup

	// Submitters: keep about o.Agents containers launched and not ended.
	for range o.SubmitConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sctx.Err() == nil && time.Now().Before(end) {
				mu.Lock()
				inFlight := 0
				for _, n := range running {
					inFlight += n
				}
				if inFlight+o.JobContainers > o.Agents {
					mu.Unlock()
					sleepCtx(sctx, 500*time.Millisecond)
					continue
				}
				i := submitted
				submitted++
				running[fmt.Sprintf("pending-%d", i)] = o.JobContainers
				mu.Unlock()
				t0 := time.Now()
				id, err := site.Submit(sctx, o.JobContainers, fmt.Sprintf("load/soak/%d", i))
				mu.Lock()
				delete(running, fmt.Sprintf("pending-%d", i))
				if err == nil {
					ids = append(ids, id)
					lat = append(lat, time.Since(t0))
					running[id] = o.JobContainers
				} else if sctx.Err() == nil {
					rep.Errors = append(rep.Errors, fmt.Sprintf("submit: %v", err))
				}
				mu.Unlock()
			}
		}()
	}
	// Watcher: forget ended jobs so that new ones are submitted.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for sctx.Err() == nil && time.Now().Before(end) {
			sleepCtx(sctx, 2*time.Second)
			mu.Lock()
			var check []string
			for id := range running {
				if !strings.HasPrefix(id, "pending-") {
					check = append(check, id)
				}
			}
			mu.Unlock()
			for _, id := range check {
				if st, err := site.State(sctx, id); err == nil && (st == "complete" || st == "error" || st == "canceled") {
					mu.Lock()
					delete(running, id)
					mu.Unlock()
				}
			}
		}
	}()

	// Chaos: cancels, disconnects, a coordinator restart.
	var cancels []cancelRecord
	restarted := false
	nextCancel, nextDrop := start.Add(20*time.Second), start.Add(30*time.Second)
	lastLog := time.Now()
	for time.Now().Before(end) && ctx.Err() == nil {
		now := time.Now()
		if now.After(nextCancel) {
			nextCancel = now.Add(20 * time.Second)
			mu.Lock()
			var live []string
			for id := range running {
				if !strings.HasPrefix(id, "pending-") {
					live = append(live, id)
				}
			}
			mu.Unlock()
			if len(live) > 0 {
				id := live[rand.N(len(live))]
				at := time.Now()
				if err := site.API.Do(ctx, http.MethodPut, "/jobs/"+id+"/cancel", site.UserToken, nil, nil); err == nil {
					cancels = append(cancels, cancelRecord{id: id, at: at})
				}
			}
		}
		if now.After(nextDrop) {
			nextDrop = now.Add(30 * time.Second)
			online, _ := site.Stats.Online()
			rep.AgentDisconnects += site.Fleet.Drop(max(1, online/20))
		}
		if !restarted && now.After(start.Add(o.Soak/2)) {
			restarted = true
			c := site.Coordinator
			if n := len(site.Coordinators); n > 1 {
				c = site.Coordinators[n-1]
				fmt.Fprintf(o.Log, "killing %s (SIGKILL); starting it again in 20 s\n", c.Name)
				c.Kill()
				rep.ReplicaKills++
				sleepCtx(ctx, 20*time.Second)
			} else {
				fmt.Fprintf(o.Log, "restarting %s (SIGTERM)\n", c.Name)
				c.Stop()
			}
			if err := c.Start(ctx); err != nil {
				rep.Errors = append(rep.Errors, fmt.Sprintf("restart %s: %v", c.Name, err))
			} else {
				site.Watch.Add(c.Name, c.Pid())
				rep.CoordinatorRestarts++
			}
		}
		if time.Since(lastLog) >= 15*time.Second {
			lastLog = time.Now()
			mu.Lock()
			fmt.Fprintf(o.Log, "  soak %s/%s: %d jobs submitted, %d running\n", time.Since(start).Round(time.Second), o.Soak, len(ids), len(running))
			mu.Unlock()
			site.logProgress(o.Log)
		}
		sleepCtx(ctx, time.Second)
	}
	stopSubmits()
	wg.Wait()
	rep.SoakSeconds = round1(time.Since(start).Seconds())
	mu.Lock()
	all := slices.Clone(ids)
	lats := slices.Clone(lat)
	mu.Unlock()
	rep.Jobs = len(all)
	if len(lats) > 0 {
		rep.SubmitPerS = round1(float64(len(all)) / o.Soak.Seconds())
		rep.SubmitP50Ms, rep.SubmitP99Ms = ms(quantile(lats, 0.5)), ms(quantile(lats, 0.99))
	}
	pushes := site.cancelPushes(cancels)
	rep.CancelPushes = len(pushes)
	rep.CancelPushP50Ms, rep.CancelPushP99Ms = ms(quantile(pushes, 0.5)), ms(quantile(pushes, 0.99))
	if len(pushes) > 0 {
		rep.CancelPushMaxMs = ms(slices.Max(pushes))
	}
	fmt.Fprintf(o.Log, "soak over: waiting for the %d jobs to end\n", len(all))
	drainStart := time.Now()
	site.Fleet.Release(0)
	states, notEnded := site.waitEnded(ctx, all, o.DrainTimeout+2*time.Minute, o.Log)
	rep.DrainSeconds = round1(time.Since(drainStart).Seconds())
	rep.TotalSeconds = round1(time.Since(start).Seconds())
	_, rep.Agents = site.Stats.Online()
	site.fillOutcome(ctx, rep, all, states, notEnded)
	return rep, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
