# Pinhole: make demo · make test · make bench · make lint
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PACKAGES := wire edge cloud client media_node hybrid_node lab bench
# Debian packages the lab and interop tests use (installed when run as root).
DEBS := nftables iproute2 conntrack coturn tinyproxy squid redis-server redis-sentinel haproxy docker-compose tshark \
        libsrtp2-dev gcc docker.io debootstrap libpython3-dev chromium-headless-shell openssl

.PHONY: demo test check bytecode compose-test lint typecheck bench system-deps venv clean mutate fuzz

# pytest-xdist workers, two per core: most tests wait (for a process, a namespace, a
# packet) rather than compute, and no verdict reads a real-time margin, so the suite holds
# with a busy loop on every core beside it (make test JOBS=1 runs in one process). The
# tests of one file run on one worker: a file's expensive fixtures (the private Docker
# engine and its images) are made once, and tests that share one machine-wide thing live
# in one file. Files are handed out heaviest first (tests/conftest.py orders them): xdist's
# own order, most tests first, left the few-test lab and Docker files for the end.
JOBS ?= $(shell echo $$(( 2 * $$(nproc) )))
PYTEST_PARALLEL := -n $(JOBS) --dist loadfile --no-loadscope-reorder

demo: venv
	$(PY) -m lab demo

# Everything, on every core, with branch coverage of the whole suite (subprocesses
# included) and per-package floors; the 20 slowest tests are listed at the end.
test: system-deps venv lint typecheck bytecode
	rm -f .coverage .coverage.*
	@# every process measures itself: pytest and its workers from start-up (coverage's
	@# .pth hook), the services the tests start from their entry point on (edge/measure.py)
	COVERAGE_PROCESS_START=$(CURDIR)/pyproject.toml COVERAGE_FILE=$(CURDIR)/.coverage \
	  $(PY) -m pytest $(PYTEST_PARALLEL) --durations=20
	$(PY) -m coverage combine -q
	$(PY) -m tests.coverage_floor

# The edit-test loop: unit and integration tests that need no root, no Redis and no
# third-party peer, on every core, without coverage (under a minute).
check: venv bytecode
	$(PY) -m pytest $(PYTEST_PARALLEL) -p no:cacheprovider -m "not slow and not redis" \
	  tests/unit tests/integration

# Pinhole's modules compiled once (each is compiled again only when its source changes).
# Where PYTHONDONTWRITEBYTECODE is set (many CI images and containers set it) Python reads
# this cache but never writes one, so without it each of the hundreds of services the
# suite starts would compile every module it imports anew: about a third of its start-up.
bytecode: venv
	PYTHONDONTWRITEBYTECODE= $(PY) -m compileall -q -j 0 $(PACKAGES) tests examples

# Mutation testing of the sans-I/O core, the relay engine and assignment (not in make test).
mutate: venv
	$(PY) -m tests.mutate

# docker-compose.yml under a private Docker engine (root): base image, images, each profile.
compose-test: venv system-deps
	$(PY) -m pytest -m docker tests/docker

# Coverage-guided fuzzing (atheris) of every parser and boundary (not in make test; a short
# run of it is): FUZZ_COUNT inputs per target, corpus in tests/fuzz/corpus, crashes saved in
# tests/fuzz/crashes and replayed by the suite.
FUZZ_COUNT ?= 1000000
fuzz: venv
	$(PY) -m tests.fuzz --count $(FUZZ_COUNT)

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy --strict $(PACKAGES) tests examples

bench: venv
	$(PY) -m bench

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt setup.py media_node/_plane.c
	@echo "==> preparing $(VENV) (Python packages of pyproject.toml; the media node's data plane is compiled)"
	@command -v cc >/dev/null || echo "==> no C compiler: the media node will relay on its Python plane (slower); for the compiled one run 'make system-deps' as root (or apt-get install gcc libpython3-dev), then 'make clean venv'"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# setuptools' editable install prints an informational banner (folders named like a
	@# package may shadow it: none here), not a fault; everything else it says is shown
	PYTHONWARNINGS="ignore:Editable installation" \
	  $(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

system-deps:
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "==> not root: Debian packages not installed ($(DEBS)); lab and interop tests skip"; \
	else \
	  missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "==> installing Debian packages:" $$missing; \
	    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  fi; \
	fi

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info .coverage .coverage.*
