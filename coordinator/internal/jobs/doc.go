// Package jobs is the job record of the coordinator: the stored Job and SubJob, their
// transitions and updates, the sentinels a store answers with, the one way a job transition is
// written (Mover: conditional update, log line, a poke of the Kafka outbox), and the reads and
// admin edits of the record (Records: get with ownership, list, sub-jobs, admin metadata).
//
// The lifecycle of a job is owned by three packages that build on this one, each with the
// narrow store it needs:
//
//	admission  POST /jobs: site, limits, image, reference data, output folder, inputs → created
//	launch     created → download_submitted (the submitter), cancel, relaunch, fail, clean
//	ingest     the agents' events: assignment, exactly-once application, the fold into the
//	           job state, the terminal update with output verification
//
// This package must not decide transitions (the lifecycle packages do) and must not talk to a
// launcher, S3 or an agent.
package jobs
