# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv themselves.
PY ?= python3
# Three workers on two cores, each taking whole files (their module fixtures stay together): most
# integration tests wait on a broker, a store or a child process (two workers kept the CPU about
# half busy: 14.5 minutes, with other work beside them; three took 9-10 on a fresh clone). The
# slowest tests are listed after every run, so the suite stays well under 15 minutes.
PYTEST_ARGS ?= -n 3 --dist loadfile --durations=25
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint bench bench-verify bench-query bench-query-dense bench-reports bench-reports-100m bench-detect bench-notices bench-api bench-durable bench-sealer drills clean

$(STAMP): pyproject.toml scripts/system-packages.sh
	scripts/system-packages.sh
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[local,dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/trail demo --data-dir $${TRAIL_DEMO_DIR:-.trail/demo} --fresh

# The crash drills time recoveries (a broker cut, kills): they run alone, after the rest.
test: $(STAMP) lint
	$(BIN)/python -m pytest $(PYTEST_ARGS) --ignore=tests/integration/test_drills.py
	$(BIN)/python -m pytest --durations=5 tests/integration/test_drills.py

lint: $(STAMP)
	$(BIN)/ruff check src tests consumers load_tests examples
	$(BIN)/ruff format --check src tests consumers load_tests examples
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: $(STAMP)
	$(BIN)/python load_tests/bench_ingest.py --out load_tests/results/ingest.json

bench-verify: $(STAMP)
	$(BIN)/python load_tests/bench_verify.py --events 10000000 --out load_tests/results/verify.json

bench-query: $(STAMP)
	$(BIN)/python load_tests/bench_query.py --events $${TRAIL_BENCH_EVENTS:-100000000} --out load_tests/results/query.json

# 10 M events over 37 days: a 100 M-event year's rows per day, for one day's queries in minutes, not hours
bench-query-dense: $(STAMP)
	$(BIN)/python load_tests/bench_query.py --events 10000000 --days 37 --out load_tests/results/query-10m-dense.json

bench-reports: $(STAMP)
	nice $(BIN)/python load_tests/bench_reports.py --events $${TRAIL_BENCH_EVENTS:-10000000} --out load_tests/results/reports.json

# The compliance report over a month of 100 M events (about an hour here, most of it generating).
bench-reports-100m: $(STAMP)
	$(BIN)/python load_tests/bench_reports.py --events 100000000 --chunk 5000000 --compliance-only --out load_tests/results/reports-100m.json

bench-detect: $(STAMP)
	$(BIN)/python load_tests/bench_detect.py --scale 0.5 --out load_tests/results/detection.json

bench-notices: $(STAMP)
	$(BIN)/python load_tests/bench_notices.py --subjects 100000 --out load_tests/results/notices.json

bench-api: $(STAMP)
	$(BIN)/python load_tests/bench_api.py --events 200000 --out load_tests/results/api.json

bench-sealer: $(STAMP)
	$(BIN)/python load_tests/bench_sealer.py --events $${TRAIL_BENCH_EVENTS:-200000} --out load_tests/results/sealer.json

bench-durable: $(STAMP)
	$(BIN)/python load_tests/bench_durable.py --out load_tests/results/durable.json

drills: $(STAMP)
	nice $(BIN)/python load_tests/drills.py --out load_tests/results/drills.json
	nice $(BIN)/python load_tests/hostile.py --inputs 100000 --out load_tests/results/hostile.json --drills load_tests/results/drills.json

clean:
	rm -rf $(VENV) .trail .pytest_cache
