# Two commands a fresh machine can run (see README.md): `make demo`, `make test`.
# Each bootstraps what it needs first (system libraries, .venv), once.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test check bench bench-load soak serve fuzz

$(VENV)/.runtime: pyproject.toml deploy/bootstrap.sh
	deploy/bootstrap.sh
	touch $@

$(VENV)/.dev: pyproject.toml deploy/bootstrap.sh
	deploy/bootstrap.sh --test
	touch $(VENV)/.runtime $@

## Run one simulated phone call through the real bridge (no keys, no GPU).
demo: $(VENV)/.runtime
	$(BIN)/phonebridge demo

## Lint, type-check and run the whole test suite with branch coverage:
## first everything but the heavy group on TEST_WORKERS pytest-xdist workers
## (one per core of the 2-core CI machine; most tests wait on real-time calls,
## so two roughly halve the wall time), then the heavy group (whole clusters,
## load benches: tests/conftest.py HEAVY) alone, one test at a time, so that
## nothing else starves their short liveness deadlines. pytest-cov combines
## the workers' coverage and the second run appends to it.
TEST_WORKERS ?= 2
test: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check phonebridge tests bench
	$(BIN)/mypy
	$(BIN)/pytest -n $(TEST_WORKERS) -m "not xdist_group" \
		--cov=phonebridge --cov-branch --cov-report=
	$(BIN)/pytest -m xdist_group \
		--cov=phonebridge --cov-branch --cov-append --cov-report=term:skip-covered

bench: $(VENV)/.dev
	$(BIN)/python bench/bench_audio.py
	$(BIN)/python bench/bench_carriers.py --write

## Concurrent calls against one `phonebridge serve` pinned to CPU 0, then two
## workers on CPUs 0-1 (sharing them with the generator on a 2-core machine);
## writes both tables to BENCHMARKS.md: the commands behind its figures.
bench-load: $(VENV)/.dev
	$(BIN)/python bench/bench_load.py --levels 30,40,45,50,55,60 --seconds 15 --write bench_load
	$(BIN)/python bench/bench_load.py --levels 40,50,60,70 --seconds 15 --workers 2 \
		--serve-cpus 0,1 --generator-cpus 0,1 --write bench_load_workers

## Personal calls (issue 15): what the context lookup adds to the voice webhook,
## and the silence after answer with and without answering when the model is ready.
.PHONY: bench-personal
bench-personal: $(VENV)/.dev
	$(BIN)/python bench/bench_personal.py context --calls 200
	$(BIN)/python bench/bench_personal.py ready --calls 10 --conditioning 2.0

## Soak: 30 minutes of churning simulated calls against one `phonebridge serve`;
## exits non-zero on a leak and writes the soak section of BENCHMARKS.md.
.PHONY: soak
soak: $(VENV)/.dev
	$(BIN)/python bench/soak.py --minutes 30

## The fuzzers with many random examples (the suite runs 150 per property):
## a failure is saved in .hypothesis/ and replayed by the next `make test`.
fuzz: $(VENV)/.dev
	PHONEBRIDGE_FUZZ_EXAMPLES=3000 $(BIN)/pytest tests/fuzz
