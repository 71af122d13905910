package htcondor

import (
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kbase/cts/shared/grace"
	"github.com/kbase/cts/shared/launcher"
)

var envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// checkEnvEntry refuses what the submit language cannot carry: odd names and line breaks.
func checkEnvEntry(k, v string) error {
	if !envNamePattern.MatchString(k) {
		return fmt.Errorf("variable name %q is not [A-Za-z_][A-Za-z0-9_.]*", k)
	}
	if strings.ContainsAny(v, "\n\r\x00") {
		return fmt.Errorf("variable %s contains a line break or NUL", k)
	}
	return nil
}

// escapeMacros protects a literal value from condor_submit's macro expansion: every '$'
// becomes $(DOLLAR), which condor_submit turns back into '$'.
func escapeMacros(v string) string { return strings.ReplaceAll(v, "$", "$(DOLLAR)") }

// quoteWord quotes one word for HTCondor's "new" argument/environment syntax (before the
// doubling of double quotes, which applies to the whole value): a word with whitespace or
// quotes goes in single quotes, with single quotes doubled.
func quoteWord(w string) string {
	if w != "" && !strings.ContainsAny(w, " \t'\"") {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", "''") + "'"
}

// newSyntax joins words into a value in the new syntax: the whole in double quotes, double
// quotes doubled.
func newSyntax(words []string) string {
	return `"` + strings.ReplaceAll(strings.Join(words, " "), `"`, `""`) + `"`
}

// Environment renders the environment command's value in HTCondor's new syntax, with the
// variables sorted by name. Values are literal: '$' is escaped from macro expansion. The
// per-proc variables set with macros are added by the caller.
func Environment(env map[string]string) (string, error) {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	words := make([]string, 0, len(keys))
	for _, k := range keys {
		if err := checkEnvEntry(k, env[k]); err != nil {
			return "", err
		}
		words = append(words, escapeMacros(k+"="+quoteWord(env[k])))
	}
	return newSyntax(words), nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_]`)

// limitName makes a user name safe as a concurrency limit and accounting group name.
func limitName(user string) string {
	if user == "" {
		return ""
	}
	return unsafeName.ReplaceAllString(user, "_")
}

var unsafeBatch = regexp.MustCompile(`[^A-Za-z0-9_.:-]`)

// CredentialSuffix ends the name of a proc's credential file, cts-<job>-<attempt>-<proc>
// plus this, in the initial directory (mode 0600) and in the proc's sandbox.
const CredentialSuffix = ".credential"

// CredentialFile is the path of container n's credential file of a launch.
func CredentialFile(cfg Config, jobID string, attempt, n int) string {
	return filepath.Join(cfg.InitialDir, fmt.Sprintf("cts-%s-%d-%d%s", jobID, attempt, n, CredentialSuffix))
}

// Description returns the submit description of one launch: one cluster, one proc per
// container with ProcId = container number (as the Python service submits, except that the
// static agent is the executable, HTCondor enforces the runtime, request_disk and batch_name
// are set, and the attempt is recorded for idempotent submits).
func Description(cfg Config, req launcher.SubmitRequest) (string, error) {
	if err := req.Validate(); err != nil {
		return "", err
	}
	env := map[string]string{}
	for k, v := range cfg.Env {
		env[k] = v
	}
	for k, v := range req.Env {
		env[k] = v
	}
	// The agent fits its container's stop and its final report inside job_max_vacate_time.
	env[grace.EnvKillGrace] = grace.Seconds(time.Duration(cfg.KillGraceSeconds * float64(time.Second)))
	envValue, err := Environment(env)
	if err != nil {
		return "", fmt.Errorf("%w: environment: %v", launcher.ErrInvalidRequest, err)
	}
	// The per-proc variables use macros, so they are appended unescaped.
	envValue = strings.TrimSuffix(envValue, `"`)
	if len(env) > 0 {
		envValue += " "
	}
	envValue += launcher.EnvContainerNumber + "=$(ProcId) " + launcher.EnvAgentAttempt + `=$(ClusterId).$(ProcId)`
	base := fmt.Sprintf("cts-%s-%d", req.JobID, req.Attempt)
	var inputs []string
	if len(req.Credentials) > 0 {
		// Each proc's credential travels as a file in its sandbox: never in the
		// description, whose environment anyone who can query the schedd can read.
		envValue += " " + launcher.EnvCredentialFile + "=" + base + "-$(ProcId)" + CredentialSuffix
		inputs = append(inputs, base+"-$(ProcId)"+CredentialSuffix)
	}
	envValue += `"`

	batch := req.BatchName
	if batch == "" {
		batch = "cts-" + req.JobID
	}
	var b strings.Builder
	line := func(k, v string) { fmt.Fprintf(&b, "%s = %s\n", k, v) }
	fmt.Fprintf(&b, "# CTS job %s, launch attempt %d: one proc per container, ProcId = container number.\n", req.JobID, req.Attempt)
	fmt.Fprintf(&b, "# Written by the CTS htcondor launcher; submit with condor_submit -terse.\n")
	line("universe", "vanilla")
	if cfg.AgentURL != "" {
		// A URL transfer does not keep the execute bit: run the agent through sh.
		line("executable", "/bin/sh")
		line("transfer_executable", "false")
		line("arguments", newSyntax([]string{"-c", quoteWord("chmod u+x ./" + cfg.agentName() + " && exec ./" + cfg.agentName())}))
		inputs = append([]string{cfg.AgentURL}, inputs...)
	} else {
		line("executable", cfg.AgentPath)
		line("transfer_executable", "true")
	}
	if len(inputs) > 0 {
		line("transfer_input_files", strings.Join(inputs, ", "))
	}
	line("initialdir", cfg.InitialDir)
	line("output", base+"-$(ProcId).out")
	line("error", base+"-$(ProcId).err")
	line("log", base+".log")
	line("should_transfer_files", "YES")
	line("when_to_transfer_output", "ON_EXIT_OR_EVICT")
	// The agent uploads outputs and logs to S3 itself: nothing comes back to the submit host.
	line("transfer_output_files", `""`)
	line("getenv", "false")
	line("environment", envValue)
	if req.CPUs > 0 {
		line("request_cpus", strconv.Itoa(req.CPUs))
	}
	if req.MemoryBytes > 0 {
		line("request_memory", strconv.FormatInt((req.MemoryBytes+(1<<20)-1)>>20, 10)) // MiB
	}
	if req.DiskBytes > 0 {
		line("request_disk", strconv.FormatInt((req.DiskBytes+1023)>>10, 10)) // KiB
	}
	line("batch_name", unsafeBatch.ReplaceAllString(batch, "_"))
	if u := limitName(req.User); u != "" {
		line("concurrency_limits", u)
		line("+AccountingGroup", strconv.Quote(u))
	}
	if cfg.ClientGroup != "" {
		line("requirements", fmt.Sprintf("regexp(%s, CLIENTGROUP)", strconv.Quote(cfg.ClientGroup)))
	}
	line("want_graceful_removal", "true")
	line("job_max_vacate_time", strconv.Itoa(int(math.Ceil(cfg.KillGraceSeconds))))
	if req.RuntimeSeconds > 0 {
		line("allowed_job_duration", strconv.FormatInt(int64(math.Ceil(req.RuntimeSeconds+cfg.RuntimeMarginSeconds)), 10))
	}
	// An agent that could not report its container's final state exits non-zero: keep the
	// proc for the reconciler and the admins instead of rerunning it.
	line("on_exit_hold", "ExitCode =!= 0")
	line("+CTSJobID", strconv.Quote(req.JobID))
	line("+CTSAttempt", strconv.Itoa(req.Attempt))
	line("+CTSContainers", strconv.Itoa(req.Containers))
	line("+CTSContainerNumber", "$(ProcId)")
	fmt.Fprintf(&b, "queue %d\n", req.Containers)
	return b.String(), nil
}
