# Plain GNU make. The only network use is pip fetching the pinned wheels of requirements.txt.
#   make venv    .venv with the pinned stack (re-installs only when requirements.txt changed),
#                then the fused AFF kernel when a C++ compiler is there (else one line says it is not built)
#   make kernels the fused AFF/MS-CAM tail library alone (net/kernels/README.md)
#   make horovod Horovod 0.28.1 built for the pinned MXNet, gloo on the CPU (docs/distributed.md; ~2 min)
#   make test    the test suite, two pytest workers (one test file each)  (extra flags: make test PYTEST_ARGS='-k bench')
#   make demo    the quick start: trains an AFF network on the bundled digits (~2 min on 2 cores)
#   make models  parameter table of the released models
#   make bench   training/inference images/s of AFF-ResNet-32 (extra flags: make bench BENCH_ARGS='...')
# PYTHON=/path/to/python3.11 make venv chooses the interpreter (default: python3.11, else python3).
# The repo is used from its root (python -m utils..., ./train_*.py); .venv does not install it. `pip install .`
# and `pip install -e .` work too (docs/install.md); offline (--no-build-isolation) they need the pinned `wheel`,
# as the venv's own setuptools 65.5 has no bdist_wheel (pip's default build isolation fetches both itself).

VENV        := .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.stamp-requirements
PYTHON      ?=
PYTEST_ARGS ?=
BENCH_MODEL ?= cifar_aff_resnet32
BENCH_ARGS  ?= --batch-size 32 --warmup 2 --windows 3 --iters 3

.PHONY: venv kernels horovod test demo models bench

venv: $(STAMP)
	@$(PY) net/kernels/build.py --optional

kernels: $(STAMP)
	$(PY) net/kernels/build.py

horovod: $(STAMP)
	@$(PY) -c 'import horovod.mxnet' 2>/dev/null && echo "horovod: already installed" || $(PY) -m utils.horovod install

$(PY):
	@py="$(PYTHON)"; \
	[ -n "$$py" ] || py=$$(command -v python3.11 || command -v python3 || true); \
	if [ -z "$$py" ]; then \
	  echo "make venv: Python 3.11 is required and neither python3.11 nor python3 is on PATH;" \
	       "install Python 3.11 (or run: make venv PYTHON=/path/to/python3.11)" >&2; exit 1; fi; \
	if ! "$$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then \
	  echo "make venv: Python 3.11 is required but $$py is '$$("$$py" -V 2>&1)';" \
	       "install Python 3.11 (or run: make venv PYTHON=/path/to/python3.11)" >&2; exit 1; fi; \
	echo "creating $(VENV) with $$py ($$("$$py" -V 2>&1))"; \
	"$$py" -m venv $(VENV) || { rm -rf $(VENV); echo "make venv: '$$py -m venv' failed" \
	  "(on Debian/Ubuntu: apt-get install python3.11-venv)" >&2; exit 1; }

$(STAMP): requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

test: venv
	$(PY) -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

demo: venv
	$(PY) train_cifar.py --dataset digits

models: venv
	$(PY) -m utils.models

bench: venv
	$(PY) -m utils.bench --model $(BENCH_MODEL) $(BENCH_ARGS)
