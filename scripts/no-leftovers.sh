#!/bin/sh
# no-leftovers.sh CMD [ARG...]: runs CMD with TMPDIR set to a new folder of its own, then checks
# that nothing CMD started still runs: a process whose working directory, program or one of
# whose arguments lies in that folder is a leftover (an agent, a launcher's supervisor, a
# mini-condor daemon, a stack a test forgot). Leftovers are listed, killed, and fail the run,
# as does CMD's own failure. The folder is removed at the end.
#
# `make test` runs the suite through it: tests make their folders with t.TempDir or
# os.MkdirTemp, which honour TMPDIR, so every process a test starts has such a folder in its
# working directory or arguments.
set -u
# A short name (unix socket paths below it stay under the kernel's 108 bytes), readable by
# every user (tests run helpers as nobody).
dir=$(mktemp -d "${TMPDIR:-/tmp}/ct.XXXXXX") && chmod 755 "$dir" || exit 1
TMPDIR=$dir
export TMPDIR

# in_dir lists the live processes (not zombies) with $dir in their cwd, exe or cmdline.
in_dir() {
	{
		find /proc/[0-9]*/cwd /proc/[0-9]*/exe -maxdepth 0 \( -lname "$dir" -o -lname "$dir/*" \) 2>/dev/null
		grep -l -a -F "$dir/" /proc/[0-9]*/cmdline 2>/dev/null
	} | cut -d/ -f3 | sort -u | while read -r pid; do
		[ "$pid" = "$$" ] && continue
		state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null)
		if [ -n "$state" ] && [ "$state" != Z ]; then
			echo "$pid $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)"
		fi
	done
}

"$@"
rc=$?

# A test's cleanup may still be ending what it started: give stragglers a minute.
deadline=$(($(date +%s) + 60))
left=$(in_dir)
while [ -n "$left" ] && [ "$(date +%s)" -lt $deadline ]; do
	sleep 1
	left=$(in_dir)
done
if [ -n "$left" ]; then
	echo "FAIL: the tests left these processes running (killed now):"
	echo "$left" | sed 's/^/  /'
	echo "$left" | while read -r pid _; do kill -9 "$pid" 2>/dev/null; done
	rc=1
fi
rm -rf "$dir" 2>/dev/null || echo "note: $dir could not be removed entirely"
exit $rc
