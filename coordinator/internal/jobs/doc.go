// Package jobs owns the life of a CTS job inside the coordinator: submission (after the input
// has been validated by jobinput and its files checked in S3), the durable submitter that hands
// jobs to their site's launcher, the application of agent events to sub-jobs and the folding of
// sub-job states into the job state (reference §2.4), output verification, and cancel.
// Persistence is behind Store; notifications go out through the transitions' outbox flags.
package jobs
