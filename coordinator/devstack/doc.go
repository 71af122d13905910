// Package devstack starts the embedded service stack that stands in for MongoDB, S3, Kafka, an
// OCI registry and KBase auth2, for automated tests and for dev mode (cts-dev) only. It
// must never be used on a production path: nothing here is tuned, secured or durable beyond a
// developer's machine or CI.
//
// Every component speaks the real protocol, so the code under test uses its production clients
// (mongo-driver, aws-sdk-go-v2, kafka-go, go-containerregistry):
//
//   - Mongo: FerretDB v1 embedded, SQLite files in a directory, behind a wire proxy that
//     forwards one message at a time across all connections. FerretDB's conditional updates
//     (findAndModify, update with a filter) query and then write by _id without re-checking
//     the filter, so concurrent callers can all "win" and concurrent $inc loses updates; the
//     serialising proxy restores per-document atomicity. The proxy also drops the reply
//     FerretDB wrongly sends to a moreToCome (w:0) request. Never use SQLite mode=memory
//     (deadlocks) and leave journal_mode alone. FerretDB has no transactions and reports a
//     unique-index violation on update as InternalError (not E11000). Its SQLite backend
//     narrows a query only for a filter of exactly {_id: X} and reads every document for any
//     other filter; even that lookup read the whole table, because FerretDB's _id index is on
//     another SQLite expression than its query: the proxy adds the index the query can use
//     (idindex.go), and runs a conditional findAndModify, update or delete on one _id as a
//     point lookup followed by the command narrowed to {_id} (pushdown.go), so that the cost
//     of both stays flat as a collection grows. Every other filter still reads the whole
//     collection: code that must stay fast with a site's history finds documents by _id.
//     The proxy's lock is read-first by default (queue.go, Mongo.SetReadFirst): a write runs
//     alone, as above; read-only commands share the lock with each other and go ahead of the
//     writes waiting for it (at most 32 while a write waits), so a point read waits for the
//     write in flight, not for the queue of writes behind it. That is a property of this dev
//     stack, not of MongoDB, and it shapes the dev site's read latencies under load
//     (docs/benchmarks.md says so beside its figures); SetReadFirst(false) restores one
//     command at a time in arrival order. SetParallelReads, a measurement mode, lets reads
//     run beside writes too. Stats count the commands by name and by collection, the time
//     they waited for the lock, and what each read waited behind.
//   - S3: versitygw with its posix backend and sidecar metadata, which stores and verifies
//     CRC64NVME. posix.New calls os.Chdir(dataRoot), and a process can host only one gateway,
//     so the gateway runs in a child process: StartS3 re-executes os.Executable() and Main, at
//     the top of main or TestMain, turns that child into the gateway.
//   - Kafka: franz-go's kfake cluster with one broker and automatic topic creation, in memory
//     or (StartKafkaIn, Start) with its log in a folder. kfake must
//     stay pinned with franz-go v1.22.3 in go.mod (its own go.mod names an older franz-go that
//     does not compile with it).
//   - Registry: go-containerregistry's in-process registry, in memory or (WithStorage, Start)
//     with its blobs on disk and its manifests in a journal replayed at start, with an optional
//     hook that serves wrong bytes under a blob's digest, to test that pulls verify layers.
//   - Auth: the fake KBase auth2 server of package auth2.
//
// Start brings the whole stack up and Close takes it down; started again on the same folder it
// finds all its state (S3 credentials and objects, databases, Kafka log, images) and, when
// they are free, the same addresses. TestStack and the Test* helpers do the same for one test
// with t.Cleanup. Each Start* function cleans up what it started when it
// fails, and every Close is idempotent.
package devstack
