#!/usr/bin/env bash
# How many wrong versions of stage N's lesson its tests let through.
#
#   tools/mutants.sh N [FILE...]
#
# cargo-mutants (`cargo install cargo-mutants --locked`) makes small wrong
# versions of each function in the files of the lesson (the files
# stageNN/exercise.txt names, or the FILEs given, as paths under src/) and
# runs the stage's tests against each. A mutant no test fails on is
# "missed": a learner could write that wrong code and `xps-learn check`
# would call the stage done.
#
# Two passes, to keep it to minutes: every mutant against the unit tests
# (a few seconds each), then only the ones they missed against all the
# stage's tests, integration tests included. A missed mutant that is
# listed in stageNN/mutants-equivalent.txt (the mutant's line as printed
# below, then an indented `why:` line) behaves like the right code and is
# counted apart. The run fails if a mutant is missed and not listed, or if
# a listed one is now caught (the list must match a fresh run).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
  echo "usage: tools/mutants.sh N [FILE...]   (N: a stage with an exercise.txt)" >&2
  exit 2
fi
n=$(printf '%02d' "$((10#$1))")
shift
stage="stage$n"
if [[ ! -f $stage/exercise.txt ]]; then
  echo "tools/mutants.sh: $stage has no exercise.txt" >&2
  exit 2
fi
if ! command -v cargo-mutants > /dev/null; then
  echo "tools/mutants.sh: needs cargo-mutants: cargo install cargo-mutants --locked" >&2
  exit 2
fi

if [[ $# -gt 0 ]]; then
  files=("$@")
else
  mapfile -t files < <(awk '/^file:/ {print $2}' "$stage/exercise.txt" | sort -u)
fi
file_args=()
for file in "${files[@]}"; do file_args+=(--file "$stage/src/$file"); done

out="target/mutants/$stage"
rm -rf "$out"
mkdir -p "$out"

# Pass 1: unit tests only (the crate's own #[test]s, in src/).
cargo mutants -p "$stage" "${file_args[@]}" --no-shuffle --output "$out/unit" \
  --cargo-test-arg=--bin --cargo-test-arg="$stage" > "$out/unit.log" 2>&1 || true
unit="$out/unit/mutants.out"
# No mutant tested at all: the unmutated tree did not build or pass its
# tests (cargo-mutants' "baseline"), and there is no figure to give.
if ! grep -qE '^(CAUGHT|MISSED|TIMEOUT|UNVIABLE) ' "$out/unit.log"; then
  echo "tools/mutants.sh: cargo-mutants tested no mutant of $stage; its log ends:" >&2
  tail -n 15 "$out/unit.log" >&2
  exit 2
fi
# A mutant line without its line:column, which move with every edit.
strip() { sed -E 's/^([^:]+):[0-9]+:[0-9]+: /\1: /'; }
strip < "$unit/missed.txt" | sort -u > "$out/missed-by-unit.txt"

# Pass 2: what the unit tests missed, against every test of the stage.
: > "$out/missed.txt"
if [[ -s $out/missed-by-unit.txt ]]; then
  # Each missed mutant, as a regex cargo-mutants matches on its name.
  regex_args=()
  while IFS= read -r mutant; do
    name=${mutant#*: }
    regex_args+=(--re "$(printf '%s' "$name" | sed -E 's/[][(){}.*+?^$|\\]/\\&/g')")
  done < "$out/missed-by-unit.txt"
  cargo mutants -p "$stage" "${file_args[@]}" --no-shuffle --output "$out/all" \
    "${regex_args[@]}" > "$out/all.log" 2>&1 || true
  strip < "$out/all/mutants.out/missed.txt" | sort -u > "$out/missed.txt"
fi

equivalent_list="$stage/mutants-equivalent.txt"
listed="$out/listed.txt"
if [[ -f $equivalent_list ]]; then
  grep -v '^\s' "$equivalent_list" | grep -v '^#' | grep -v '^$' | sort -u > "$listed" || true
else
  : > "$listed"
fi

count() { if [[ -f $1 ]]; then grep -c . "$1" || true; else echo 0; fi; }
caught_unit=$(count "$unit/caught.txt")
timeouts=$(count "$unit/timeout.txt")
unviable=$(count "$unit/unviable.txt")
missed_by_unit=$(count "$out/missed-by-unit.txt")
missed_total=$(count "$out/missed.txt")
caught=$((caught_unit + timeouts + missed_by_unit - missed_total))
equivalent=$(comm -12 "$out/missed.txt" "$listed" | grep -c . || true)
comm -23 "$out/missed.txt" "$listed" > "$out/missed-not-listed.txt"
comm -13 "$out/missed.txt" "$listed" > "$out/listed-not-missed.txt"
missed=$(count "$out/missed-not-listed.txt")
viable=$((caught + missed))
score=$(awk -v c="$caught" -v v="$viable" 'BEGIN { if (v == 0) print "-"; else printf "%.0f%%", 100 * c / v }')

echo "$stage, ${files[*]}:"
echo "  caught      $caught (of them $timeouts by a timeout, $((missed_by_unit - missed_total)) only by the integration tests)"
echo "  missed      $missed"
echo "  equivalent  $equivalent (listed in $equivalent_list)"
echo "  unviable    $unviable (did not compile: not counted)"
echo "  score       $score of $viable viable mutants not listed as equivalent"
# The same figures per file: the target is met file by file, not on average.
for file in "${files[@]}"; do
  path="$stage/src/$file"
  in_file() { if [[ -f $1 ]]; then grep -c "^$path:" "$1" || true; else echo 0; fi; }
  c=$(($(in_file "$unit/caught.txt") + $(in_file "$unit/timeout.txt") \
    + $(in_file "$out/missed-by-unit.txt") - $(in_file "$out/missed.txt")))
  m=$(in_file "$out/missed-not-listed.txt")
  e=$(comm -12 "$out/missed.txt" "$listed" | grep -c "^$path:" || true)
  s=$(awk -v c="$c" -v v="$((c + m))" 'BEGIN { if (v == 0) print "-"; else printf "%.0f%%", 100 * c / v }')
  printf '  %-28s %4s  (caught %d, missed %d, equivalent %d)\n' "$file" "$s" "$c" "$m" "$e"
done
status=0
if [[ -s $out/missed-not-listed.txt ]]; then
  echo "missed, and not listed as equivalent (a test should catch it):"
  sed 's/^/  /' "$out/missed-not-listed.txt"
  status=1
fi
if [[ -s $out/listed-not-missed.txt ]]; then
  echo "listed as equivalent, but not missed by this run (take it off the list):"
  sed 's/^/  /' "$out/listed-not-missed.txt"
  status=1
fi
echo "(cargo-mutants' own output: $out)"
exit $status
