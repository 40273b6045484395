# depthlab — the two commands: `make demo` and `make test` (and `make docs` for the site).
# Each creates .venv if missing and installs what it needs; nothing is installed by hand.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.depthlab-installed
export PYTHONHASHSEED := 0

.PHONY: demo test bench docs docs-check install clean browser

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall when the project's metadata changes. torch==2.13.0 (CPU build) is pinned in the extras.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,test,docs]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/depthlab report

# The explorer's browser test drives Debian's Chromium at /usr/bin/chromium (with Playwright, never
# `playwright install`). CI runs as root on Debian: install it there when it is missing.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "make browser: /usr/bin/chromium is missing and there is no apt-get; install Chromium there" >&2; exit 1; \
	  fi; \
	fi

# Two pytest workers on two cores, one BLAS thread each (no oversubscription).
test: $(STAMP) browser
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -n 2 -q

# One BLAS/PyTorch thread for every contender: on a shared 2-core machine two threads per
# process make OpenBLAS and PyTorch's OpenMP pool fight, and timings swing by 2-5x. The explorer
# has no contender: it runs as `depthlab explore` does, BLAS with its default threads (one per core).
# Some machines pin OpenBLAS to an older kernel (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE) to work
# around old OpenBLAS builds; NumPy's current OpenBLAS detects the CPU itself, so the benchmark
# unsets both (RESULTS.md names the kernel that ran). `make bench BENCH_ENV=` keeps them.
BENCH_ENV ?= env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE
bench: $(STAMP)
	$(BENCH_ENV) $(PY) benchmarks/bench.py --threads 1
	$(BENCH_ENV) $(PY) benchmarks/explore_bench.py --out benchmarks/EXPLORE_RESULTS.md

# The documentation site, offline, into site/ (open site/index.html): runs the tutorials and
# every experiment (--quick) for the gallery; strict, so any warning fails. A few minutes.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/mkdocs build --strict
	@echo "documentation built: open site/index.html"

# The built site rendered in headless Chromium (Debian's chromium, installed if missing):
# the API page and a tutorial page must show their content, screenshots in build/docs-check/.
docs-check: docs
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	$(PY) docs/check_site.py site build/docs-check

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache site .cache
