# MedIS framework: set-up and checks.  `make test` alone works on a fresh clone.
#   TORCH_SPEC  pip requirement for torch, installed before the package (default: CPU build 2.13.0).
#               GPU users: make setup TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>"
#   PYTHON      interpreter used to create the virtual environment.
PYTHON     ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV       ?= .venv
PY         := $(VENV)/bin/python
PYTEST_ARGS ?=

SMOKE_DIR  ?= outputs/smoke
DEMO_DIR   ?= outputs/demo
DEMO_CKPT  ?= $(DEMO_DIR)/pranet_lite_demo.ckpt
TRAIN_ARGS ?=
ATTACK_ARGS ?=
# The demo trains and attacks in float64 (experiment=demo_train, demo), so that its table does not depend
# on the CPU's kernels; DEMO_ENV also pins them (AVX2 for ATen and oneDNN) and the threads (2), for a
# predictable speed. DEMO_ENV= runs unpinned (the same table).
DEMO_ENV   ?= ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 OMP_NUM_THREADS=2

.PHONY: setup test test-docs test-all demo demo-check smoke clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Every command block of README.md and docs/ run as written, with size-limiting overrides only
# (tests/docs/test_commands.py; a few minutes). .ci/run runs it after `make test`.
test-docs: setup
	$(PY) -m pytest -q -m docs tests/docs $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest -q -m "" $(PYTEST_ARGS)

# Synthetic ISIC (generated on first use), pranet_lite trained once (demo_train, kept as
# $(DEMO_CKPT)), then MedIS on 32 test images: six paper losses, untargeted + four targets.
# TRAIN_ARGS / ATTACK_ARGS: extra overrides of the two commands (e.g. smaller sizes).
demo: setup
	@if [ ! -f "$(DEMO_CKPT)" ]; then \
	  rm -rf "$(DEMO_DIR)/train" && \
	  $(DEMO_ENV) $(PY) train.py experiment=demo_train hydra.run.dir="$(DEMO_DIR)/train" $(TRAIN_ARGS) && \
	  cp "$$(ls "$(DEMO_DIR)"/train/checkpoints/best-*.ckpt | tail -n 1)" "$(DEMO_CKPT)"; \
	fi
	$(DEMO_ENV) $(PY) attack.py experiment=demo model.checkpoint="$(DEMO_CKPT)" hydra.run.dir="$(DEMO_DIR)/attack" $(ATTACK_ARGS)

# A fresh `make demo` (its own folder, trained from scratch) compared cell by cell with README's demo
# table (bench/check_demo_table.py): the demo trains and attacks in float64, so every CPU prints the same.
demo-check: setup
	rm -rf outputs/demo_check
	$(MAKE) demo DEMO_DIR=outputs/demo_check
	$(PY) bench/check_demo_table.py --run outputs/demo_check

# A tiny victim trained and attacked end to end (under a minute on 2 cores): a check for contributors
# that training, checkpoints, the attack, records, summary, gallery and W&B work together.
smoke: setup
	rm -rf "$(SMOKE_DIR)"
	$(PY) train.py experiment=smoke_train hydra.run.dir="$(SMOKE_DIR)/train"
	$(PY) attack.py experiment=smoke model.checkpoint="$(SMOKE_DIR)/train/checkpoints/last.ckpt" hydra.run.dir="$(SMOKE_DIR)/attack"

clean-venv:
	rm -rf $(VENV)
