#!/usr/bin/env bash
# Trains the student with Horovod on every machine listed in a hosts file.
#
# Usage: multinode_train.sh [--dry-run] TOTAL_GPUS [extra trainer flags...]
#
# Launches TOTAL_GPUS copies of network_distillation_distributed_truncated.py
# with mpirun, one per GPU slot of the hosts file (`<address> slots=<gpus>` per
# line). Extra flags go to the trainer after the defaults below, so they win
# (absl keeps the last value of a flag). --dry-run prints the mpirun command
# and exits.
#
# Environment (all optional):
#   HOSTS            hosts file (default: the `hosts` file next to this script)
#   PYTHON           python with TensorFlow and Horovod (default: .venv/bin/python
#                    next to this script; it must exist at the same path on
#                    every host, which copyclust takes care of)
#   MPIRUN           mpirun to use (default: mpirun on PATH)
#   MPIRUN_ARGS      extra mpirun arguments, split on spaces
#   INTERFACE        network interface for NCCL; default: the default route's
#                    device from `ip route`
#   EC2_DETECT_INTERFACE=1  ask the EC2 instance metadata service for the
#                    primary interface instead. Off by default: without it the
#                    script never contacts the metadata address.
#   BERT_CONFIG_FILE, INPUT_FILE, OUTPUT_DIR, TRUNCATION_FACTOR, DO_TRAIN,
#   DO_EVAL, NUM_TRAIN_STEPS, NUM_WARMUP_STEPS, TRAIN_BATCH_SIZE
#                    the trainer defaults (see below)
#
# num_train_steps and num_warmup_steps are totals: the trainer divides them by
# the number of processes and multiplies the learning rate by it.

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROGRAM=$(basename "$0")
# shellcheck source=cluster_helpers.sh
. "$SCRIPT_DIR/cluster_helpers.sh"

usage() {
  echo "usage: $PROGRAM [--dry-run] TOTAL_GPUS [extra trainer flags...]" >&2
}

die() {
  echo "$PROGRAM: error: $*" >&2
  exit 1
}

note() {
  echo "$PROGRAM: $*" >&2
}

# ec2_interface: prints the device of this EC2 instance's primary network
# interface, found by its MAC address from the instance metadata (IMDSv2).
ec2_interface() {
  # Reached only when the user opts in with EC2_DETECT_INTERFACE=1.
  local metadata=http://169.254.169.254/latest token mac device  # EC2_DETECT_INTERFACE opt-in
  token=$(curl -sf --max-time 2 -X PUT "$metadata/api/token" \
    -H "X-aws-ec2-metadata-token-ttl-seconds: 60") || return 1
  mac=$(curl -sf --max-time 2 -H "X-aws-ec2-metadata-token: $token" \
    "$metadata/meta-data/mac") || return 1
  for device in /sys/class/net/*; do
    if [[ "$(cat "$device/address" 2> /dev/null)" == "$mac" ]]; then
      basename "$device"
      return 0
    fi
  done
  return 1
}

# route_interface: prints the device of the default route, if there is one.
route_interface() {
  ip route show default 2> /dev/null |
    awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}'
}

# first_up_interface: prints the first non-loopback interface that is up.
first_up_interface() {
  ip -o link show up 2> /dev/null |
    awk -F': ' '$2 !~ /^lo(@|$)/ {sub(/@.*/, "", $2); print $2; exit}'
}

# choose_interface HOSTS_FILE: prints the interface NCCL should use.
choose_interface() {
  local hosts_file=$1 device
  if [[ -n "${INTERFACE:-}" ]]; then
    echo "$INTERFACE"
    return
  fi
  if [[ "${EC2_DETECT_INTERFACE:-0}" == 1 ]]; then
    if device=$(ec2_interface) && [[ -n "$device" ]]; then
      note "interface $device (from the EC2 instance metadata)"
      echo "$device"
      return
    fi
    note "EC2 metadata gave no interface; trying the default route"
  fi
  device=$(route_interface)
  if [[ -n "$device" ]]; then
    note "interface $device (default route; set INTERFACE to change)"
    echo "$device"
    return
  fi
  if only_local_hosts "$hosts_file"; then
    note "no default route; using lo because $hosts_file lists only this machine"
    echo lo
    return
  fi
  device=$(first_up_interface)
  if [[ -n "$device" ]]; then
    note "no default route; using $device, the first interface that is up" \
      "(set INTERFACE if the hosts reach each other through another one)"
    echo "$device"
    return
  fi
  note "no default route and no interface up except lo; using lo"
  echo lo
}

dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then
  dry_run=1
  shift
fi
if [[ $# -lt 1 ]]; then
  usage
  exit 1
fi
if ! [[ "$1" =~ ^[1-9][0-9]*$ ]]; then
  usage
  die "TOTAL_GPUS must be a positive whole number, got '$1'"
fi
total_gpus=$1
shift

hosts_file=${HOSTS:-$SCRIPT_DIR/hosts}
[[ -r "$hosts_file" ]] ||
  die "hosts file '$hosts_file' not found; create it or set HOSTS"
# A malformed line is named (file:line) by total_slots; stop there.
slots=$(total_slots "$hosts_file") || exit 1
if ((total_gpus > slots)); then
  die "TOTAL_GPUS=$total_gpus is more than the $slots slot(s) in $hosts_file;" \
    "lower TOTAL_GPUS or add hosts/slots there"
fi

python=${PYTHON:-$SCRIPT_DIR/.venv/bin/python}
mpirun=${MPIRUN:-mpirun}
trainer=$SCRIPT_DIR/network_distillation_distributed_truncated.py
interface=$(choose_interface "$hosts_file")

# Open MPI's TCP transport normally skips loopback and docker bridges so that
# ranks on different machines talk over the real network. When every host is
# this machine loopback is the only sensible TCP path, so use it alone.
if only_local_hosts "$hosts_file"; then
  tcp_interfaces=(-mca btl_tcp_if_include lo)
else
  tcp_interfaces=(-mca btl_tcp_if_exclude "lo,docker0")
fi

# Open MPI refuses to run as root unless told to.
root_flag=()
if [[ "$(id -u)" == 0 ]]; then
  root_flag=(--allow-run-as-root)
fi

mpirun_args=()
if [[ -n "${MPIRUN_ARGS:-}" ]]; then
  read -r -a mpirun_args <<< "$MPIRUN_ARGS"
fi

# -x VAR copies VAR to the remote ranks; it must be set to be copied.
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}

command=(
  "$mpirun" -np "$total_gpus"
  -hostfile "$hosts_file"
  "${root_flag[@]}"
  -mca plm_rsh_no_tree_spawn 1
  -bind-to socket -map-by slot
  -x HOROVOD_HIERARCHICAL_ALLREDUCE=1
  -x "HOROVOD_FUSION_THRESHOLD=${HOROVOD_FUSION_THRESHOLD:-16777216}"
  -x LD_LIBRARY_PATH -x PATH
  -mca pml ob1 -mca btl ^openib
  -x "NCCL_SOCKET_IFNAME=$interface" "${tcp_interfaces[@]}"
  -x "TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-0}"
  "${mpirun_args[@]}"
  "$python" "$trainer"
  --bert_config_file "${BERT_CONFIG_FILE:-$SCRIPT_DIR/uncased_L-12_H-768_A-12/bert_config.json}"
  --input_file "${INPUT_FILE:-$SCRIPT_DIR/data/wiki_distill_dupe1_single_test.tfrecord}"
  --output_dir "${OUTPUT_DIR:-$SCRIPT_DIR/output_dir}"
  --truncation_factor "${TRUNCATION_FACTOR:-10}"
  --do_train "${DO_TRAIN:-True}"
  --do_eval "${DO_EVAL:-False}"
  --num_train_steps "${NUM_TRAIN_STEPS:-2000}"
  --num_warmup_steps "${NUM_WARMUP_STEPS:-1000}"
  --train_batch_size "${TRAIN_BATCH_SIZE:-128}"
  "$@"
)

if ((dry_run)); then
  printf '%q ' "${command[@]}"
  echo
  exit 0
fi

command -v "$mpirun" > /dev/null ||
  die "mpirun not found ('$mpirun'); install OpenMPI (make setup) or set MPIRUN"
[[ -x "$python" ]] ||
  die "python not found at '$python'; run 'make setup' or set PYTHON"
[[ -f "$trainer" ]] || die "trainer not found at '$trainer'"

note "launching $total_gpus process(es) on the hosts in $hosts_file"
exec "${command[@]}"
