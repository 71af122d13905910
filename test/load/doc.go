// Package load is the load benchmark (`make load`, command cts-load): how many agents one
// coordinator holds, what a connected agent costs and how fast events are applied.
//
// A run starts the embedded stack (FerretDB behind its serialising proxy, kfake, versitygw,
// the registry, auth2) in a child process of its own, one cts-coordinator process configured
// with a site whose launcher plugin is cts-launcher-sim (package simlaunch: a real go-plugin
// launcher whose backend is this generator), and the fleet of simulated agents. Jobs are
// submitted over REST as a user would; the coordinator launches them through the plugin, and
// for each container the fleet runs an agent that speaks the agent protocol with the wire
// types of shared/protocol exactly as cts-agent does: its container's own launch credential
// (from the launch, as a batch system hands it to the container), then the session credential
// the coordinator renews, on the websocket upgrade, hello, assignment, events with sequence numbers that wait for their
// acknowledgement and are resent after a reconnect, pongs, live log lines, progress, and the
// coordinator's cancel. An agent runs no container and moves no data but one small output
// file with its CRC64/NVME (the coordinator checks every output in S3 before a job
// completes). Nothing bypasses the coordinator's checks.
//
// The generator is kept cheap, since it shares the cores with what it measures: one timer
// heap and a fixed pool of workers run every agent's steps (sched), and an agent's only
// goroutine is its connection's reader, parked in a read. The coordinator's, the stack's and
// the generator's CPU and memory are read from /proc apart (Watch).
//
// Run writes the figures of Report (load-report.json); the event ledger (Verify) compares
// what every agent sent with the transitions the store holds, so an event acknowledged or sent
// and never applied is counted as lost. Soak runs the mixed soak behind cts-load -soak.
package load
