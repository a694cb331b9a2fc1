#!/usr/bin/env bash
# tests/sanitize.sh: the test suite under AddressSanitizer + UndefinedBehaviorSanitizer, or
# integration tests with the servers under valgrind, in a copy of the source tree.
#
#   bash tests/sanitize.sh [--valgrind] [--reuse] SRC_REPO WORK_DIR
#
# --reuse: no new copy; rebuild WORK_DIR/src as it is (after edits there) and run again.
# Default mode: copies SRC_REPO to WORK_DIR/src, configures it with --enable-sanitizers,
# builds, and runs `make check` (unit and integration tests). Every instrumented process
# (test programs, the bitsvault-api and bitsvault-worker they spawn, Check's forked test
# children) writes its reports to WORK_DIR/reports/{asan,ubsan}.<pid>; any report, or any
# failed test, fails the run.
# --valgrind: a plain build in WORK_DIR/src, then the integration tests named in
# BITSVAULT_VALGRIND_TESTS (default: itest_vault itest_requests itest_bits itest_gitfmt itest_statuscache) with
# BITSVAULT_TEST_WRAPPER set, so that the API and workers run under valgrind (memcheck,
# definite leaks are errors); each server writes WORK_DIR/reports/vg.<test>-<proc>.<pid>.log
# and any error in one fails the run.
#
# The servers come from the caller, as for `make check`: BITSVAULT_TEST_DATABASE_URL,
# BITSVAULT_TEST_REDIS_URL (and BITSVAULT_TEST_REQUIRE=1). BITSVAULT_SANITIZE_JOBS sets
# make's -j (default: nproc); BITSVAULT_SANITIZE_TESTS="itest_vault check_tar ..." runs only
# those tests in the default mode. Exit status 0 only when the build, every test and the report
# scan are clean. docs/testing.md, section "Sanitizers and valgrind", has the details.
set -euo pipefail

mode=asan
reuse=0
while [[ ${1:-} == --* ]]; do
	case $1 in
	--valgrind) mode=valgrind ;;
	--reuse) reuse=1 ;;
	*) break ;;
	esac
	shift
done
if (($# != 2)); then
	echo "usage: bash tests/sanitize.sh [--valgrind] [--reuse] SRC_REPO WORK_DIR" >&2
	exit 2
fi
src=$(cd "$1" && pwd)
work=$2
mkdir -p "$work"
work=$(cd "$work" && pwd)
tree=$work/src
reports=$work/reports
# The spawned servers' logs (tests/itest.c keeps them there), scanned after the run.
export BITSVAULT_TEST_LOG_DIR=$reports/servers
jobs=${BITSVAULT_SANITIZE_JOBS:-$(nproc)}

say() { printf 'sanitize.sh: %s\n' "$*" >&2; }
die() {
	say "$*"
	exit 1
}
# Seconds since the epoch, for the timings the report prints.
now() { date +%s; }

[[ -f $src/configure.ac ]] || die "$src is not a bitsvault source tree (no configure.ac)"
[[ -n ${BITSVAULT_TEST_DATABASE_URL:-} && -n ${BITSVAULT_TEST_REDIS_URL:-} ]] ||
	say "warning: BITSVAULT_TEST_DATABASE_URL / BITSVAULT_TEST_REDIS_URL unset: integration tests will skip"
if [[ $mode == valgrind ]]; then
	command -v valgrind >/dev/null || die "valgrind not found (apt-get install valgrind)"
fi

# --- a clean copy ------------------------------------------------------------------------
t0=$(now)
rm -rf "$reports"
mkdir -p "$reports" "$BITSVAULT_TEST_LOG_DIR"
if ((reuse)); then
	[[ -f $tree/config.status ]] || die "--reuse: $tree was never configured"
	cd "$tree"
	rm -f tests/*.log tests/*.trs test-suite.log
else
	rm -rf "$tree"
	say "copying $src to $tree"
	cp -a "$src" "$tree"
	cd "$tree"
	# The source may be a configured, built tree: its objects must not be linked into this
	# build (make does not know the flags changed), so clean it, whatever state it is in.
	if [[ -f Makefile && -f config.status ]]; then
		make distclean >"$work/distclean.log" 2>&1 || say "make distclean failed (see $work/distclean.log): removing build products by hand"
	fi
	find . \( -name '*.o' -o -name '*.a' -o -name '*.trs' -o -name '.dirstamp' \) -type f -delete
	find . -name .deps -type d -prune -exec rm -rf {} +
	rm -f config.status config.log Makefile test-suite.log tests/*.log

	say "autoreconf"
	autoreconf -fi >"$work/autoreconf.log" 2>&1 || {
		cat "$work/autoreconf.log" >&2
		die "autoreconf failed"
	}
	conf=()
	[[ $mode == asan ]] && conf=(--enable-sanitizers)
	say "./configure ${conf[*]}"
	./configure "${conf[@]}" >"$work/configure.log" 2>&1 || {
		tail -n 40 "$work/configure.log" >&2
		die "configure failed (log: $work/configure.log)"
	}
fi
say "building (make -j$jobs)"
t1=$(now)
make -j"$jobs" >"$work/build.log" 2>&1 || {
	tail -n 60 "$work/build.log" >&2
	die "the build failed (log: $work/build.log)"
}
make -j"$jobs" check TESTS= >>"$work/build.log" 2>&1 || {
	tail -n 60 "$work/build.log" >&2
	die "the test programs did not build (log: $work/build.log)"
}
t2=$(now)
say "built in $((t2 - t1)) s"

# --- the run -------------------------------------------------------------------------------
rc=0
if [[ $mode == asan ]]; then
	# Every finding stops its process with a non-zero status; reports go to files so that
	# a finding in a spawned server (whose exit status no test looks at) is seen too. The
	# leak check (LSan) is on by default in every process but the itest drivers (itest.c).
	# fast_unwind_on_malloc=0: allocation stacks through libraries built without frame
	# pointers (jansson, libc) reach our code. UBSan's log_path is ignored by gcc's split
	# runtimes (it prints to stderr): the servers' logs are kept and scanned for it.
	export ASAN_OPTIONS="halt_on_error=1:abort_on_error=0:fast_unwind_on_malloc=0:check_initialization_order=1:strict_init_order=1:log_path=$reports/asan"
	export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:report_error_type=1:log_path=$reports/ubsan"
	export LSAN_OPTIONS="suppressions=$tree/tests/lsan.supp:print_suppressions=0"
	# Instrumented code runs 2-3 times slower: the harness's waits and Check's timeouts
	# scale with these.
	export BITSVAULT_TEST_TIME_FACTOR=${BITSVAULT_TEST_TIME_FACTOR:-3}
	export CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-4}
	if [[ -n ${BITSVAULT_SANITIZE_TESTS:-} ]]; then
		list=()
		for t in $BITSVAULT_SANITIZE_TESTS; do list+=("tests/${t#tests/}"); done
		say "make check TESTS='${list[*]}' under ASan+UBSan (reports in $reports)"
		make -j"$jobs" check TESTS="${list[*]}" >"$work/check.log" 2>&1 || rc=$?
	else
		say "make check under ASan+UBSan (reports in $reports)"
		make -j"$jobs" check >"$work/check.log" 2>&1 || rc=$?
	fi
else
	vgtests=${BITSVAULT_VALGRIND_TESTS:-itest_vault itest_requests itest_bits itest_gitfmt itest_statuscache}
	list=()
	for t in $vgtests; do list+=("tests/${t#tests/}"); done
	# Definite leaks are errors; possible/reachable ones are library state kept to exit.
	# No --error-exitcode: the worker's fetch child (load_fetch.c) would see its exit
	# status changed; the logs are what is checked, below.
	export BITSVAULT_TEST_WRAPPER="valgrind --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite --track-origins=yes --num-callers=30 --suppressions=$tree/tests/valgrind.supp --log-file=$reports/vg.%q{BV_ITEST_PROC}.%p.log"
	export BITSVAULT_TEST_TIME_FACTOR=${BITSVAULT_TEST_TIME_FACTOR:-10}
	say "make check TESTS='${list[*]}' with the servers under valgrind (reports in $reports)"
	make -j"$jobs" check TESTS="${list[*]}" >"$work/check.log" 2>&1 || rc=$?
fi
t3=$(now)
say "tests ran in $((t3 - t2)) s (make check exit status $rc)"

# --- summaries and the report scan -----------------------------------------------------------
echo
echo "==> Check summaries ($mode)"
for log in tests/*.log; do
	[[ -e $log ]] || continue
	grep -H -E '^[0-9]+%: Checks: ' "$log" || true
done
echo
echo "==> automake summary ($mode)"
if [[ -f test-suite.log ]]; then
	grep -E '^# (TOTAL|PASS|SKIP|XFAIL|FAIL|XPASS|ERROR):' test-suite.log || true
else
	echo "(no test-suite.log)"
	tail -n 40 "$work/check.log"
fi
for trs in tests/*.trs; do
	[[ -e $trs ]] || continue
	res=$(sed -n 's/^:global-test-result: //p' "$trs")
	case $res in
	PASS | XFAIL) ;;
	SKIP) echo "SKIP ${trs%.trs} (as in scripts/test, not a failure)" ;;
	*)
		echo
		echo "==> log of ${trs%.trs} ($res)"
		tail -n 150 "${trs%.trs}.log"
		rc=1
		;;
	esac
done

nrep=0
if [[ $mode == asan ]]; then
	for f in "$reports"/asan.* "$reports"/ubsan.*; do
		[[ -s $f ]] || continue
		nrep=$((nrep + 1))
		echo
		echo "==> sanitizer report $(basename "$f")"
		head -n 80 "$f"
	done
	# UBSan reports (stderr) and any report that missed its file, in the test programs'
	# logs and the servers' logs.
	pat='^==[0-9]+==ERROR: [A-Za-z]+Sanitizer|: runtime error: |^SUMMARY: [A-Za-z]+Sanitizer'
	for f in tests/*.log "$BITSVAULT_TEST_LOG_DIR"/*.log; do
		[[ -e $f ]] || continue
		grep -q -E "$pat" "$f" || continue
		nrep=$((nrep + 1))
		echo
		echo "==> sanitizer report in $f"
		grep -n -E -A 12 "$pat" "$f" | head -n 60
	done
else
	nvg=0
	for f in "$reports"/vg.*.log; do
		[[ -e $f ]] || continue
		nvg=$((nvg + 1))
		if grep -q -E 'ERROR SUMMARY: [1-9]' "$f"; then
			nrep=$((nrep + 1))
			echo
			echo "==> valgrind errors in $(basename "$f")"
			grep -v -E '^==[0-9]+== *$' "$f" | head -n 150
		elif ! grep -q 'ERROR SUMMARY: 0 errors' "$f"; then
			# No summary: the process was killed (SIGKILL after the stop timeout) and its
			# leak check never ran; valgrind saw nothing before that.
			echo "valgrind: $(basename "$f") has no ERROR SUMMARY (process killed before exit)"
		fi
	done
	((nvg > 0)) || {
		echo "valgrind: no valgrind log at all: the wrapper was not used"
		nrep=$((nrep + 1))
	}
	echo "valgrind: $nvg server processes checked"
fi
((nrep == 0)) || rc=1

echo
echo "==> sanitize.sh ($mode): $nrep report(s); build $((t2 - t1)) s, tests $((t3 - t2)) s, total $((t3 - t0)) s"
if ((rc != 0)); then
	echo "sanitize.sh ($mode): FAIL (logs: $work/check.log, $tree/tests/*.log, reports: $reports)"
	exit 1
fi
echo "sanitize.sh ($mode): OK"
