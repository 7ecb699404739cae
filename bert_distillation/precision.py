# coding=utf-8
"""--precision: the compute type of the teacher and the students.

  fp32  everything in float32 (the default, the original behaviour);
  bf16  matmuls in bfloat16: for CPUs with AVX512-BF16 or AMX-BF16 and for
        GPUs from Ampere (compute capability 8.0) on. Same range as
        float32, so no loss scaling;
  fp16  matmuls in float16 with dynamic loss scaling (optimization.py): for
        GPUs with tensor cores (Volta, 7.0, and later: V100, T4, A100).

In every case the variables, the optimizer state and the checkpoints are
float32 under Google's names (modeling.py casts where a variable is read),
and LayerNorm, the softmaxes, the losses and the teacher's top-k are
float32.

check_hardware() warns when the hardware cannot run the requested type
fast; hardware_warning() is the same decision as a pure function of the CPU
flags and the GPUs' compute capabilities, so that it can be tested.
"""

import tensorflow as tf

tf1 = tf.compat.v1

PRECISIONS = ("fp32", "bf16", "fp16")

FLAG_HELP = (
    "Compute type of the model: fp32 (default), bf16 (CPUs with "
    "AVX512-BF16/AMX, GPUs from Ampere on) or fp16 (GPUs, with dynamic loss "
    "scaling when training). Weights, optimizer state and checkpoints stay "
    "float32; LayerNorm, softmax, losses and stored probabilities are "
    "float32.")

COMPUTE_TYPES = {"fp32": tf.float32, "bf16": tf.bfloat16, "fp16": tf.float16}

# CPU flags (as in /proc/cpuinfo) with native bfloat16 dot products.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")

# Slowdowns measured on this project's 2-core AMD EPYC (TensorFlow 2.15.1,
# oneDNN 3.2.1), matmul 128x768x3072, against float32 on the same CPU.
CPU_FP16_SLOWDOWN = "about 200x"
CPU_BF16_EMULATED_SLOWDOWN = "about 2x"


def compute_type(precision):
  """The tf.DType that modeling.py computes in for a --precision value."""
  return COMPUTE_TYPES[precision]


def cpu_flags(cpuinfo_path="/proc/cpuinfo"):
  """The set of CPU feature flags of this machine (empty if unknown)."""
  try:
    with open(cpuinfo_path) as cpuinfo:
      for line in cpuinfo:
        if line.startswith("flags"):
          return set(line.split(":", 1)[1].split())
  except OSError:
    pass
  return set()


def gpu_compute_capabilities():
  """The (major, minor) compute capability of every visible GPU."""
  capabilities = []
  for gpu in tf.config.list_physical_devices("GPU"):
    details = tf.config.experimental.get_device_details(gpu)
    capabilities.append(tuple(details.get("compute_capability", (0, 0))))
  return capabilities


def hardware_warning(precision, cpu_flag_set, gpu_capabilities):
  """Why `precision` will be slow on this hardware, or None if it is fine.

  Args:
    precision: one of PRECISIONS.
    cpu_flag_set: the CPU's feature flags (see cpu_flags()).
    gpu_capabilities: (major, minor) of each visible GPU; empty = CPU only.
  """
  if precision == "fp32":
    return None
  if gpu_capabilities:
    oldest = min(gpu_capabilities)
    name = "%d.%d" % oldest
    if precision == "bf16" and oldest < (8, 0):
      return ("--precision bf16 on a GPU of compute capability %s: only "
              "Ampere (8.0) and later GPUs have bfloat16 tensor cores; here "
              "bf16 runs on the CUDA cores, no faster and often slower than "
              "fp32. Use --precision fp16 on this GPU." % name)
    if precision == "fp16" and oldest < (7, 0):
      return ("--precision fp16 on a GPU of compute capability %s: only "
              "Volta (7.0) and later GPUs have float16 tensor cores; expect "
              "little or no speed-up over fp32." % name)
    return None
  if precision == "fp16":
    return ("--precision fp16 on a CPU: TensorFlow has no fast float16 "
            "matmul on CPUs; it runs %s slower than fp32. fp16 is meant for "
            "GPUs; on a CPU use --precision bf16 (with AVX512-BF16 or AMX) "
            "or fp32." % CPU_FP16_SLOWDOWN)
  if precision == "bf16" and not cpu_flag_set.intersection(BF16_CPU_FLAGS):
    return ("--precision bf16 on a CPU without AVX512-BF16 or AMX-BF16 "
            "(flags %s not in /proc/cpuinfo): oneDNN emulates bfloat16 "
            "there, %s slower than fp32. Use --precision fp32 on this CPU."
            % ("/".join(BF16_CPU_FLAGS), CPU_BF16_EMULATED_SLOWDOWN))
  return None


def check_hardware(precision):
  """Logs a warning when `precision` will be slow here; returns it (or None).

  A warning, not an error: a slow run is still correct, and the tests run
  fp16 on CPUs on purpose.
  """
  message = hardware_warning(precision, cpu_flags(),
                             gpu_compute_capabilities())
  if message:
    tf1.logging.warning("SLOW PRECISION: %s", message)
  return message
