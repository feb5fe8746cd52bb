# Shared helpers of ci/run.sh and ci/test.sh (sourced, not executed).
#
# say/die print on stderr, with colour and a timestamp only on a terminal.
# step NAME CMD... runs one step, prints it with its wall time and records
# the outcome for step_report; steps never abort the caller, the caller
# decides what depends on what.

if [ -t 2 ]; then
	say() { printf '\033[1m%s %s:\033[0m %s\n' "$(date -u +%H:%M:%S)" "$PROG" "$*" >&2; }
else
	say() { printf '%s %s: %s\n' "$(date -u +%H:%M:%S)" "$PROG" "$*" >&2; }
fi
die() { say "error: $*"; exit 1; }

# Prints a command shell-quoted, then runs it.
run() {
	say "\$ $(printf '%q ' "$@")"
	"$@"
}

STEP_NAMES=()
STEP_RESULTS=()
STEP_SECS=()
STEP_FAILED=0

# step NAME CMD... : run CMD as a named, timed step; returns CMD's status.
step() {
	local name=$1 start rc
	shift
	say "==> $name"
	start=$(date +%s)
	if "$@"; then rc=0; else rc=$?; fi
	local secs=$(($(date +%s) - start))
	STEP_NAMES+=("$name")
	STEP_SECS+=("$secs")
	if [ "$rc" -eq 0 ]; then
		STEP_RESULTS+=("ok")
		say "<== $name: ok (${secs} s)"
	elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		# coreutils timeout: 124 after SIGTERM, 137 after the SIGKILL.
		STEP_RESULTS+=("TIMED OUT (exit $rc)")
		STEP_FAILED=1
		say "<== $name: TIMED OUT, exit status $rc (${secs} s)"
	else
		STEP_RESULTS+=("FAILED (exit $rc)")
		STEP_FAILED=1
		say "<== $name: FAILED with exit status $rc (${secs} s)"
	fi
	return "$rc"
}

# step_skip NAME WHY : record a step that could not run because an earlier
# step it depends on failed (counts as a failure).
step_skip() {
	STEP_NAMES+=("$1")
	STEP_SECS+=(0)
	STEP_RESULTS+=("SKIPPED: $2")
	STEP_FAILED=1
	say "<== $1: SKIPPED ($2)"
}

# Prints the table of steps with their outcome and time.
step_report() {
	local i total=0
	printf '\n%-34s %-36s %6s\n' "step" "result" "secs"
	for i in "${!STEP_NAMES[@]}"; do
		printf '%-34s %-36s %6s\n' "${STEP_NAMES[$i]}" "${STEP_RESULTS[$i]}" "${STEP_SECS[$i]}"
		total=$((total + STEP_SECS[i]))
	done
	printf '%-34s %-36s %6s\n' "total" "" "$total"
}

# Runs a build script whose last stdout line is an artifact path; stores the
# path in the variable named $1. Logs stay on stderr.
build_artifact() {
	local var=$1 out path
	shift
	out=$("$@") || return $?
	path=$(printf '%s\n' "$out" | tail -n 1)
	[ -f "$path" ] || { say "error: $* printed '$path', which is not a file"; return 1; }
	printf -v "$var" '%s' "$path"
	say "$var=$path"
}
