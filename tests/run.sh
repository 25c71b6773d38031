#!/usr/bin/env bash
# Runs every test binary and script given, each with a time limit, and closes
# with the line "N passed, N failed". Exit status is non-zero if any failed.
set -u
passed=0
failed=0
failures=()
limit=${TEST_TIMEOUT:-600}
for t in "$@"; do
	start=$(date +%s%N)
	echo "=== RUN $t"
	if [[ "$t" == *.py ]]; then
		timeout -k 5 "$limit" /usr/bin/python3 "$t"
	else
		timeout -k 5 "$limit" "$t"
	fi
	rc=$?
	ms=$((($(date +%s%N) - start) / 1000000))
	secs="$((ms / 1000)).$(printf %03d $((ms % 1000)))"
	if [ $rc -eq 0 ]; then
		passed=$((passed + 1))
		echo "=== PASS $t (${secs}s)"
	else
		failed=$((failed + 1))
		failures+=("$t (exit $rc)")
		echo "=== FAIL $t (exit $rc, ${secs}s)"
	fi
done
echo
for f in "${failures[@]+"${failures[@]}"}"; do
	echo "failed: $f"
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
