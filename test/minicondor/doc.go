// Package minicondor is a small simulator of the four HTCondor command-line tools the CTS
// HTCondor launcher drives: condor_submit, condor_q, condor_history and condor_rm. It lets the
// whole HTCondor path (plugin, agents, reconciler) run end to end on one machine without an
// HTCondor pool. It is a test tool: nothing in production imports it.
//
// One binary (cmd/minicondor) plays every tool: it dispatches on the base name of argv[0]
// (tests install it under the four names with Install) or on its first argument
// ("minicondor condor_q -json"). Its whole state lives in the directory named by the
// environment variable MINICONDOR_DIR:
//
//	lock                  flock(2) taken by every writer
//	next_cluster          the next ClusterId
//	queue/<c>.<p>.json    the ClassAd of every proc still in the queue (idle, running, removing, held)
//	history/<c>.<p>.json  the ClassAd of every proc that left the queue (completed, removed)
//	execute/<c>.<p>/      the proc's scratch directory (its cwd; transferred inputs land here)
//	shadow/<c>.<p>.log    what the proc's shadow process had to say
//
// ClassAds are written and read with the simulator's own codec (classad.go), which follows
// HTCondor's: condor_q's framing, attributes sorted case-insensitively, reals always with a
// "." ("37327.0"), integers, strings with HTCondor's escapes, null for undefined, and every
// expression that is not a literal as "\/Expr(<text>)\/" (OnExitHold, Requirements, a "+Attr"
// that is not a literal, and MemoryUsage, which is condor_submit's
// ((ResidentSetSize + 1023) / 1024), never a number). Its tests read real condor_q output
// (plugins/htcondor/testdata/real), write it back byte for byte, and check that every
// attribute a simulated ad shares with a real one has the real one's type. It shares no code
// with the HTCondor launcher's reader.
//
// What it simulates:
//   - condor_submit [-terse] [-batch-name NAME] FILE: parses the submit description (key = value
//     lines, "+Attr = classad literal", '#' comments, '\' continuations, `queue`, `queue N` and
//     `queue VAR from ( items )`), expands $(ClusterId) $(Cluster) $(ProcId) $(Process)
//     $(DOLLAR) and the queue variable, refuses unknown submit commands and unknown macros,
//     writes one ClassAd per proc (JobStatus 1) and starts one detached shadow process per proc.
//   - The shadow copies `executable` (when transfer_executable is true, the default) and every
//     transfer_input_files entry (local paths and http(s) URLs) into the proc's scratch
//     directory, and starts the executable there with `arguments` and `environment` (both in
//     HTCondor's "new" quoted syntax) as its whole environment, plus _CONDOR_SCRATCH_DIR,
//     _CONDOR_SLOT and TMPDIR, like a starter with getenv = false. stdout/stderr go to the
//     `output` / `error` files (relative to initialdir). JobStatus becomes 2.
//   - On exit it records ExitCode (or ExitBySignal/ExitSignal), RemoteWallClockTime,
//     RemoteUserCpu, RemoteSysCpu (from rusage) and ResidentSetSize (KiB) from the peak RSS;
//     CompletionDate and CommittedTime only when the proc completes or is removed (they stay
//     0 on a hold, as in a real ad); on_exit_hold (the forms
//     `ExitCode =!= 0`, `ExitCode != 0`, `true`, `false`) holds the proc (JobStatus 5,
//     HoldReasonCode 3 with HTCondor's wording), else the proc completes (JobStatus 4) and moves
//     to the history.
//   - allowed_job_duration: a proc running longer is stopped and held (HoldReasonCode 46).
//   - condor_rm [-reason R] CLUSTER... | -constraint EXPR: an idle or held proc goes to the
//     history as removed (JobStatus 3) at once; a running one is marked removed (JobStatus 3,
//     still in the queue) and its shadow sends SIGTERM to the process group when
//     want_graceful_removal is true (SIGKILL otherwise), then SIGKILL after job_max_vacate_time
//     seconds (default 10); once the process is gone the proc moves to the history. Removing
//     nothing fails like the real tool ("Couldn't find/remove all jobs ...", exit 1).
//   - condor_q / condor_history [-json] [-constraint EXPR] [-attributes A,B] [CLUSTER...]: print
//     the matching ads as a JSON array (nothing at all when none match, as the real tools do).
//     Constraints support literals, attribute references, == != =?= =!= < <= > >= && || ! and
//     parentheses.
//
// What it does NOT simulate (a test that needs any of it needs a real pool, see
// deploy/htcondor):
//   - daemons, matchmaking and slots: every proc starts at once on this machine, whatever its
//     requirements, request_cpus/memory/disk, concurrency limits or accounting group (they are
//     recorded in the ad, never enforced); there is no idle time unless the machine is slow;
//   - users and authentication: everything runs as the caller; Owner is the caller's name;
//   - file transfer back to the submit side (transfer_output_files, when_to_transfer_output):
//     output/error are written straight into initialdir; nothing is spooled; `log` (the job
//     event log) is created empty;
//   - the ClassAd language beyond the subset above: no functions (regexp, strcat, ...), no
//     evaluation of requirements, periodic_hold/periodic_remove/periodic_release, rank, or
//     on_exit_hold_reason; unknown attributes in constraints are undefined, and so are
//     attributes holding an expression (MemoryUsage included);
//   - whether a proc held by on_exit_hold keeps ExitCode in its ad: the simulator keeps it;
//     the one real held ad found (HTCondor 8.8.10) has none;
//   - condor_release, condor_hold, condor_qedit, condor_vacate, eviction and restarts,
//     JobLeaseDuration, MaxJobRetirementTime, checkpoints, suspension, GPUs, containers
//     universes and any universe but vanilla;
//   - the job's memory and CPU usage beyond the waited-for processes' rusage (MemoryUsage is
//     the peak RSS of the largest process, not the cgroup's);
//   - crash recovery of the schedd: a shadow killed with SIGKILL leaves its proc running in
//     the queue forever (a real schedd would restart or hold it).
//
// It must not be imported by production code.
package minicondor
