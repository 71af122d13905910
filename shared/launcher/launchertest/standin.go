package launchertest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// StandInScript is a POSIX shell stand-in for cts-agent. Each container picks its behaviour
// from space-separated per-container lists in its environment (word n for container n, the
// last word for higher numbers):
//
//	CTS_TEST_SLEEP        seconds to run (fractions allowed)
//	CTS_TEST_EXIT         exit code after sleeping
//	CTS_TEST_IGNORE_TERM  1: survive SIGTERM (only SIGKILL ends it before the sleep is over)
//
// It appends its whole environment, its working directory and the content and mode of its
// credential file (CTS_AGENT_CREDENTIAL_FILE, when set) to
// $CTS_TEST_RECORD_DIR/$JOB_ID.$CTS_TEST_ATTEMPT.$CONTAINER_NUMBER.env on every start, and a line
// to the same name with .term each time it receives SIGTERM (exiting 143 unless told to ignore
// it). Run as "reap --yes" (what a launcher runs after killing an agent) it only appends a
// line to the same name with .reap.
const StandInScript = `#!/bin/sh
# Stand-in for cts-agent used by the launcher conformance suite (shared/launcher/launchertest).
n="${CONTAINER_NUMBER:-x}"
rec="${CTS_TEST_RECORD_DIR:?CTS_TEST_RECORD_DIR is not set}/${JOB_ID:-nojob}.${CTS_TEST_ATTEMPT:-x}.$n"
if [ "$1" = reap ]; then
	# A launcher's cleanup after a killed agent ("cts-agent reap --yes"): not a start.
	echo "reap $*" >>"$rec.reap"
	exit 0
fi

# pick LIST DEFAULT: word number $n of LIST, else its last word, else DEFAULT.
pick() {
	i=0
	v="$2"
	for w in $1; do
		v="$w"
		[ "$i" -eq "$n" ] 2>/dev/null && break
		i=$((i + 1))
	done
	echo "$v"
}
secs=$(pick "${CTS_TEST_SLEEP:-}" 0)
code=$(pick "${CTS_TEST_EXIT:-}" 0)
ignore=$(pick "${CTS_TEST_IGNORE_TERM:-}" 0)

on_term() {
	echo "TERM $$" >>"$rec.term"
	if [ "$ignore" != 1 ]; then
		exit 143
	fi
}
trap on_term TERM

echo "stand-in $n of ${JOB_ID:-nojob} started"
echo "stand-in $n stderr" >&2
{
	echo "--- start $$"
	echo "CTS_TEST_CWD=$(pwd)"
	if [ -n "${CTS_AGENT_CREDENTIAL_FILE:-}" ]; then
		echo "CTS_TEST_CREDENTIAL=$(cat "$CTS_AGENT_CREDENTIAL_FILE")"
		echo "CTS_TEST_CREDENTIAL_MODE=$(stat -c %a "$CTS_AGENT_CREDENTIAL_FILE")"
	fi
	env
} >>"$rec.env"

if [ "$ignore" = 1 ]; then
	# A TERM to the process group also kills the sleep; start another until the time is up.
	whole=${secs%.*}
	i=0
	while [ "$i" -lt "${whole:-0}" ]; do
		sleep 1 &
		wait $!
		i=$((i + 1))
	done
	exit "$code"
fi
sleep "$secs" &
wait $!
exit "$code"
`

// WriteStandIn writes StandInScript as an executable file "cts-agent-standin" in dir and
// returns its path.
func WriteStandIn(dir string) (string, error) {
	path := filepath.Join(dir, "cts-agent-standin")
	if err := os.WriteFile(path, []byte(StandInScript), 0o755); err != nil {
		return "", fmt.Errorf("write stand-in: %w", err)
	}
	return path, nil
}

// Behaviour is what one stand-in container does.
type Behaviour struct {
	// Sleep is how long it runs (whole seconds when IgnoreTERM).
	Sleep time.Duration
	// Exit is its exit code.
	Exit int
	// IgnoreTERM makes it survive SIGTERM.
	IgnoreTERM bool
}

// standInEnv encodes per-container behaviours as the stand-in's environment.
func standInEnv(bs []Behaviour) map[string]string {
	var sleeps, exits, ignores []string
	for _, b := range bs {
		sleeps = append(sleeps, strconv.FormatFloat(b.Sleep.Seconds(), 'f', -1, 64))
		exits = append(exits, strconv.Itoa(b.Exit))
		ig := "0"
		if b.IgnoreTERM {
			ig = "1"
		}
		ignores = append(ignores, ig)
	}
	return map[string]string{
		"CTS_TEST_SLEEP":       strings.Join(sleeps, " "),
		"CTS_TEST_EXIT":        strings.Join(exits, " "),
		"CTS_TEST_IGNORE_TERM": strings.Join(ignores, " "),
	}
}

// Record is what one stand-in container wrote.
type Record struct {
	// Starts holds the environment of each start, in order (CTS_TEST_CWD is its working
	// directory).
	Starts []map[string]string
	// TERMs counts the SIGTERMs it received.
	TERMs int
}

// ReadRecord reads the record of container n of (jobID, attempt) from dir. A container that
// never started gives an empty Record.
func ReadRecord(dir, jobID string, attempt, n int) (Record, error) {
	base := filepath.Join(dir, fmt.Sprintf("%s.%d.%d", jobID, attempt, n))
	var rec Record
	data, err := os.ReadFile(base + ".env")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return rec, fmt.Errorf("read record: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "--- start ") {
			rec.Starts = append(rec.Starts, map[string]string{})
			continue
		}
		if len(rec.Starts) == 0 {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			rec.Starts[len(rec.Starts)-1][k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return rec, fmt.Errorf("read record: %w", err)
	}
	term, err := os.ReadFile(base + ".term")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return rec, fmt.Errorf("read record: %w", err)
	}
	rec.TERMs = bytes.Count(term, []byte("TERM"))
	return rec, nil
}
