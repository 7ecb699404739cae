#!/usr/bin/env bash
# Extracts the articles of a Wikipedia XML dump as JSON lines with WikiExtractor
# (PyPI package wikiextractor==3.0.6, run through wikiextractor_compat.py,
# which fixes it for Python 3.11; see README.md).
#
# Usage:
#   run_wikiextractor.sh [options] DUMP OUTPUT_DIR
#
# DUMP is a pages-articles dump (.xml or .xml.bz2). OUTPUT_DIR receives the
# tree AA/wiki_00, AA/wiki_01, ... It must not exist yet or be empty. The
# extraction goes to OUTPUT_DIR.partial first and is renamed when complete, so
# an interrupted run never leaves a half-filled OUTPUT_DIR; OUTPUT_DIR.partial
# is removed when the extraction fails or is stopped. A damaged dump (a .bz2
# cut short or with flipped bytes, a .xml without its final </mediawiki>)
# ends the run with an error naming it.
#
# Options (each has an environment variable as default):
#   --processes N   extraction processes      (PROCESSES, default: all CPUs)
#   --bytes SIZE    maximum size of each file (BYTES, default: 100M)
#   --compress      bzip2 each output file    (COMPRESS=1; default: off)
# Environment:
#   PYTHON          interpreter to use (default: the project's .venv/bin/python
#                   if it exists, else python3)

set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"

usage() {
  sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

die() {
  echo "run_wikiextractor.sh: $*" >&2
  exit 1
}

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then
    PYTHON="$repo/.venv/bin/python"
  else
    PYTHON=python3
  fi
fi
processes="${PROCESSES:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)}"
bytes="${BYTES:-100M}"
compress="${COMPRESS:-0}"

positional=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --processes) [[ $# -ge 2 ]] || usage; processes="$2"; shift 2 ;;
    --processes=*) processes="${1#*=}"; shift ;;
    --bytes) [[ $# -ge 2 ]] || usage; bytes="$2"; shift 2 ;;
    --bytes=*) bytes="${1#*=}"; shift ;;
    --compress) compress=1; shift ;;
    -h|--help) usage ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) positional+=("$1"); shift ;;
  esac
done
[[ ${#positional[@]} -eq 2 ]] || usage
dump="${positional[0]}"
output="${positional[1]%/}"

[[ -f "$dump" ]] || die "dump $dump not found (download one first, see README.md)"
[[ "$processes" =~ ^[1-9][0-9]*$ ]] || die "--processes must be a positive integer, got '$processes'"
[[ "$bytes" =~ ^[1-9][0-9]*[KkMmGg]$ ]] || die "--bytes must look like 500K, 100M or 1G, got '$bytes'"
if [[ -d "$output" && -n "$(ls -A "$output")" ]]; then
  die "output directory $output is not empty; remove it or choose another"
fi

partial="$output.partial"
rm -rf "$partial"
# Whatever ends the run before the rename (an error, Ctrl-C, SIGTERM), the
# half-filled folder goes.
trap 'rm -rf "$partial"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
args=("$dump" --json --no-templates -o "$partial" --processes "$processes" --bytes "$bytes")
if [[ "$compress" == 1 ]]; then
  args+=(--compress)
fi

echo "Extracting $dump into $output with $processes processes" >&2
# --no-templates: 3.0.6 never expands templates in its output, so the extra
# pass over the dump that collects template definitions is skipped.
"$PYTHON" "$here/wikiextractor_compat.py" "${args[@]}" ||
  die "extracting $dump failed (see the ERROR above); nothing was written to $output"

[[ -d "$partial" ]] || die "WikiExtractor wrote nothing (see its messages above)"
rmdir "$output" 2>/dev/null || true
mv "$partial" "$output"
trap - EXIT
echo "Done: $(find "$output" -type f | wc -l) files in $output" >&2
