# Two commands do everything on a fresh machine:  make book   and   make test
# Each target bootstraps .venv when it is missing.

PYTHON_BOOT ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
PROFILE     ?= cpu
NOTEBOOKS   := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
STAMP       := $(VENV)/.emolib-installed

.PHONY: setup data notebooks results book test test-fast verify lint bench clean help mutate

help:
	@echo "make book    set up, build EmoSynth, execute the notebooks (PROFILE=$(PROFILE)), render the book"
	@echo "make test    set up, run every test (unit, integration, notebooks with nbval)"
	@echo "make verify  re-execute every chapter (cpu profile) in a fresh folder; every output must match"
	@echo "make results re-execute the results page from benchmarks/results/study.csv (seconds)"
	@echo "make setup | data | notebooks | lint | bench | mutate | clean"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@command -v shellcheck >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && apt-get install -y -qq shellcheck) >/dev/null 2>&1; } \
	  || echo "note: shellcheck not installed; its test will be skipped"
	@touch $(STAMP)

setup: $(STAMP)

data: setup
	./data_download.sh synthetic $(if $(filter gpu,$(PROFILE)),--image-size 224 --size 20000 --out data/synthetic-224,)

notebooks: setup data
	@for nb in $(NOTEBOOKS); do \
	  echo "== papermill $$nb (profile $(PROFILE))"; \
	  EMOLIB_PROFILE=$(PROFILE) $(VENV)/bin/papermill "$$nb" "$$nb" -k python3 --cwd notebooks \
	    --no-progress-bar || exit 1; \
	  $(PY) scripts/nbtidy.py "$$nb" || exit 1; \
	  $(PY) scripts/refresh_run_times.py "$$nb" || exit 1; \
	done

# The results page reads the committed study CSV and the chapters' own records: no training.
results: setup
	$(VENV)/bin/papermill book/results.ipynb book/results.ipynb -k python3 --cwd book \
	  --no-progress-bar

book: notebooks results
	rm -rf book/notebooks && mkdir -p book/notebooks && cp $(NOTEBOOKS) book/notebooks/
	$(VENV)/bin/jupyter-book build book -W --keep-going
	@echo "open book/_build/html/index.html"

test: setup
	EMOLIB_PROFILE=smoke $(PY) -m pytest -q tests $(if $(NOTEBOOKS),notebooks --nbval-lax,) book/results.ipynb

# Strict nbval: a fresh EMOLIB_HOME (its own data/ and runs/, so no run is reused; the
# dataset is built first, as make book does, so chapter 00 does not print its progress),
# the cpu profile with the committed outputs' thread count, every cell compared with its
# committed output after notebooks/nbval_sanitize.cfg has normalised timings, rates, dates.
VERIFY_THREADS ?= 2
verify: setup
	@home=$$(mktemp -d "$${TMPDIR:-/tmp}/emolib-verify.XXXXXX"); \
	echo "== make verify: EMOLIB_HOME=$$home, profile cpu, $(VERIFY_THREADS) threads"; \
	EMOLIB_HOME=$$home $(PY) -c "from emolib.notebook import setup; setup('cpu')" \
	  || { rm -rf "$$home"; exit 1; }; \
	EMOLIB_HOME=$$home EMOLIB_PROFILE=cpu OMP_NUM_THREADS=$(VERIFY_THREADS) \
	  $(PY) -m pytest -q -p no:cacheprovider --nbval \
	  --nbval-sanitize-with notebooks/nbval_sanitize.cfg --nbval-cell-timeout 1800 $(NOTEBOOKS); \
	status=$$?; rm -rf "$$home"; exit $$status

test-fast: setup
	$(PY) -m pytest -q tests -m "not slow"

lint: setup
	$(VENV)/bin/ruff check emolib tests benchmarks

bench: setup
	$(PY) benchmarks/train_throughput.py

# Mutation testing of the taught core (mutmut), each module against its own fast tests;
# not part of `make test`. Writes benchmarks/results/mutation.json; survivors are killed by a
# test or explained in benchmarks/MUTATION.md. MODULES=losses,metrics runs some of them.
mutate: setup
	$(PY) benchmarks/mutate.py $(subst $(comma), ,$(MODULES))

comma := ,

clean:
	rm -rf book/_build book/notebooks .pytest_cache
