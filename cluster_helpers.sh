#!/usr/bin/env bash
# Small helpers for a cluster described by a hosts file (`<address> slots=<n>`
# per line, as mpirun reads it).
#
# Source it and call the functions:
#   . cluster_helpers.sh
#   runclust hosts "nvidia-smi -L" verbose   # run a command on every host
#   copyclust hosts                           # rsync the project to every host
# or run it directly: ./cluster_helpers.sh runclust hosts "uptime"
#
# With CLUSTER_DRY_RUN=1 the ssh and rsync commands are printed, not run.
# Host keys are accepted on first contact and checked afterwards
# (StrictHostKeyChecking=accept-new); set SSH_OPTIONS to change that.

CLUSTER_PROJECT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SSH_OPTIONS=${SSH_OPTIONS:-"-o StrictHostKeyChecking=accept-new -o BatchMode=yes"}

# check_hosts_file HOSTS_FILE: checks every line strictly; on the first bad
# line prints FILE:LINE and what is wrong, and fails. A line is
# `<address> [slots=N] [max_slots=N]` (N >= 1, `max-slots` also accepted),
# optionally followed by `# comment`; blank and comment lines are skipped.
check_hosts_file() {
  if [[ ! -r "$1" ]]; then
    echo "cluster_helpers: cannot read hosts file '$1'" >&2
    return 1
  fi
  awk -v file="$1" '
    function bad(why) {
      printf "%s:%d: %s: \"%s\"\n", file, NR, why, line > "/dev/stderr"
      failed = 1
      exit 1
    }
    {
      line = $0
      if (line ~ /\r$/) {
        sub(/\r$/, "", line)
        bad("Windows line ending (CRLF); convert the file with: sed -i \"s/\\r$//\" " file)
      }
      sub(/#.*/, "")
      if (NF == 0) next
      if ($1 ~ /^[^:]+:[0-9]+$/)
        bad("write \"" substr($1, 1, index($1, ":") - 1) " slots=" substr($1, index($1, ":") + 1) "\"; host:N is the -H form, not the hosts file form")
      if ($1 !~ /^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$/ && $1 !~ /^[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*$/)
        bad("\"" $1 "\" is not a host name or address")
      for (i = 2; i <= NF; i++) {
        if ($i !~ /^(slots|max_slots|max-slots)=/)
          bad("unknown field \"" $i "\" (expected slots=N or max_slots=N)")
        if ($i !~ /=[1-9][0-9]*$/)
          bad("\"" $i "\": the count must be a whole number of at least 1")
      }
      hosts++
    }
    END {
      if (!failed && !hosts) {
        printf "%s: lists no host (a line is: <address> slots=N)\n", file > "/dev/stderr"
        failed = 1
      }
      exit failed
    }' "$1"
}

# host_names HOSTS_FILE: prints the address of every host, one per line,
# skipping blank lines and comments. Fails on a malformed hosts file.
host_names() {
  check_hosts_file "$1" || return 1
  awk '{sub(/#.*/, "")} NF {print $1}' "$1"
}

# total_slots HOSTS_FILE: prints the sum of the slots; a host line without
# slots=N counts as one slot, as in Open MPI. Fails on a malformed hosts file.
total_slots() {
  check_hosts_file "$1" || return 1
  awk '{sub(/#.*/, "")}
       NF {
         n = 1
         for (i = 2; i <= NF; i++) if ($i ~ /^slots=/) n = substr($i, 7) + 0
         total += n
       }
       END {print total + 0}' "$1"
}

# is_local_host ADDRESS: true for localhost and 127.x.x.x addresses.
is_local_host() {
  [[ "$1" == localhost || "$1" == 127.* || "$1" == ::1 ]]
}

# only_local_hosts HOSTS_FILE: true when every host in the file is this machine.
only_local_hosts() {
  local host names
  names=$(host_names "$1") || return 1
  [[ -n "$names" ]] || return 1
  while read -r host; do
    is_local_host "$host" || return 1
  done <<< "$names"
}

# _cluster_run COMMAND...: runs a command, or prints it under CLUSTER_DRY_RUN=1.
_cluster_run() {
  if [[ "${CLUSTER_DRY_RUN:-0}" == 1 ]]; then
    printf "%q " "$@"
    echo
  else
    "$@"
  fi
}

# runclust HOSTS_FILE COMMAND [verbose]: runs COMMAND through ssh on every host.
# Stops at the first host where it fails.
runclust() {
  if [[ $# -lt 2 ]]; then
    echo "usage: runclust HOSTS_FILE COMMAND [verbose]" >&2
    return 2
  fi
  local hosts_file=$1 command=$2 verbose=${3:-} host names
  local -a ssh_options
  read -r -a ssh_options <<< "$SSH_OPTIONS"
  names=$(host_names "$hosts_file") || return 1
  while read -r host; do
    [[ -n "$host" ]] || continue
    if [[ "$verbose" == verbose ]]; then
      echo "On $host"
    fi
    # -n: keep ssh from eating the host list on stdin.
    _cluster_run ssh -n "${ssh_options[@]}" "$host" "$command" || return 1
  done <<< "$names"
}

# copyclust HOSTS_FILE [DIR]: rsyncs DIR (default: this project) to the same
# path on every host that is not this machine. Outputs stay behind.
copyclust() {
  if [[ $# -lt 1 ]]; then
    echo "usage: copyclust HOSTS_FILE [DIR]" >&2
    return 2
  fi
  local hosts_file=$1 dir=${2:-$CLUSTER_PROJECT_DIR} host names
  dir=$(cd "$dir" && pwd) || return 1
  if [[ "${CLUSTER_DRY_RUN:-0}" != 1 ]] && ! command -v rsync > /dev/null; then
    echo "copyclust: rsync not found; install it (apt-get install rsync)" >&2
    return 1
  fi
  names=$(host_names "$hosts_file") || return 1
  while read -r host; do
    if [[ -z "$host" ]] || is_local_host "$host"; then
      continue
    fi
    _cluster_run rsync -az --exclude output_dir --exclude demo_output \
      --exclude .git -e "ssh $SSH_OPTIONS" "$dir/" "$host:$dir/" || return 1
  done <<< "$names"
}

# Run directly (not sourced): the first argument names the helper.
if ! (return 0 2> /dev/null); then
  case "${1:-}" in
    runclust | copyclust | host_names | total_slots | check_hosts_file) "$@" ;;
    *)
      echo "usage: $0 {runclust HOSTS_FILE COMMAND [verbose] | copyclust HOSTS_FILE [DIR]}" >&2
      exit 2
      ;;
  esac
fi
