# evlake: two commands on a fresh machine: `make demo` and `make test`.
# Debug builds share one target dir outside the clone (DataFusion is heavy:
# ~6 min clean in debug, ~31 min in release), so only `make bench` builds release.

CARGO_TARGET_DIR ?= $(HOME)/.cache/evlake-target
export CARGO_TARGET_DIR
VENV ?= $(HOME)/.cache/evlake-venv
PYTHON := $(VENV)/bin/python
EVLAKE ?= $(CARGO_TARGET_DIR)/debug/evlake
LAKE ?= lake
# The demo's lake, which `make demo` and `make clean` delete: never taken
# from the environment (a LAKE exported for `make run` must not be wiped).
DEMO_LAKE := lake

.PHONY: help build test demo run bench soak fuzz spark-check lint venv clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

build: ## Build the debug binary (shared by demo and tests)
	cargo build

# The venv is (re)filled when this list changes (its stamp file is named
# after it), so a venv cached from before a reader was added gets it.
PYDEPS := duckdb pyarrow polars
PYSTAMP := $(VENV)/.installed-$(subst $() ,-,$(PYDEPS))
$(PYSTAMP):
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet $(PYDEPS)
	touch $@

venv: $(PYSTAMP) ## Python venv with duckdb, pyarrow and polars (interop test, bench)

test: $(PYSTAMP) ## Run every test (unit + the one integration binary), installing what they need
	EVLAKE_PYTHON=$(PYTHON) cargo test

demo: build ## evlake run on sample_data/ into ./lake, daily_metrics, then a late batch recomputes only its dates
	rm -rf $(DEMO_LAKE)
	@echo "=== 1. evlake run on the first two arrival batches (ingest, silver, gold):"
	$(EVLAKE) --lake $(DEMO_LAKE) run sample_data/2024-03-15.jsonl    --processing-time 2024-03-16T02:00:00Z
	$(EVLAKE) --lake $(DEMO_LAKE) run sample_data/2024-03-16.jsonl.gz --processing-time 2024-03-17T02:00:00Z
	@echo "=== re-running the same inputs is a no-op:"
	$(EVLAKE) --lake $(DEMO_LAKE) run sample_data/2024-03-15.jsonl sample_data/2024-03-16.jsonl.gz
	@echo "=== daily_metrics:"
	$(EVLAKE) --lake $(DEMO_LAKE) query "SELECT event_date, events, users, sessions, bounce_sessions AS bounces, avg_session_duration_s AS avg_s, conversion_rate AS conv, purchases, revenue, signups, late_events AS late FROM daily_metrics ORDER BY event_date"
	$(EVLAKE) --lake $(DEMO_LAKE) status
	@echo "=== 2. a late batch arrives (mobile events for the 15th and 16th, and new days); ingest it:"
	$(EVLAKE) --lake $(DEMO_LAKE) ingest sample_data/2024-03-19.jsonl --processing-time 2024-03-20T02:00:00Z
	@echo "=== the dates that became dirty:"
	$(EVLAKE) --lake $(DEMO_LAKE) status
	@echo "=== run again: only those dates (and the neighbours their sessions reach) are recomputed:"
	$(EVLAKE) --lake $(DEMO_LAKE) run --processing-time 2024-03-20T03:00:00Z
	$(EVLAKE) --lake $(DEMO_LAKE) query "SELECT event_date, events, users, sessions, bounce_sessions AS bounces, avg_session_duration_s AS avg_s, conversion_rate AS conv, purchases, revenue, signups, late_events AS late FROM daily_metrics ORDER BY event_date"
	$(EVLAKE) --lake $(DEMO_LAKE) query "SELECT * FROM daily_revenue_by_currency ORDER BY event_date, currency"
	@echo "=== lateness per partition:"
	$(EVLAKE) --lake $(DEMO_LAKE) lateness

INBOX ?= incoming
run: ## One pipeline run over $(INBOX)/ into $(LAKE) (what an hourly cron job calls); JSON summary appended to $(LAKE).runs.jsonl
	$(EVLAKE) --lake $(LAKE) run $(INBOX) --json >> $(LAKE).runs.jsonl

SEEDS ?= 20
soak: build ## Randomized soak of the debug binary, not in CI: incremental == full, dry run == run, kill -9 + re-run, SIGINT/SIGTERM + re-run, --known-at, a growing file, readers beside a writer, a full disk as root (SEEDS=N histories, a quarter as many of the others)
	python3 tools/soak.py incremental $(SEEDS)
	python3 tools/soak.py plan $$(( ($(SEEDS) + 3) / 4 ))
	python3 tools/soak.py kill $$(( ($(SEEDS) + 3) / 4 ))
	python3 tools/soak.py interrupt $$(( ($(SEEDS) + 3) / 4 ))
	python3 tools/soak.py known-at $$(( ($(SEEDS) + 3) / 4 ))
	python3 tools/soak.py grow $$(( ($(SEEDS) + 3) / 4 ))
	python3 tools/soak.py readers $$(( ($(SEEDS) + 3) / 4 ))
	if [ "$$(id -u)" = 0 ]; then python3 tools/soak.py full-disk $$(( ($(SEEDS) + 3) / 4 )); else echo "soak.py full-disk skipped: it mounts a tmpfs, run as root"; fi

bench: $(PYSTAMP) ## Release build; evlake vs DuckDB: ingest, silver, whole pipeline, late batch (EVENTS=5000000 for the big run); status
	cargo build --release
	$(PYTHON) bench/ingest_bench.py --evlake $(CARGO_TARGET_DIR)/release/evlake --events $(or $(EVENTS),1000000)
	$(PYTHON) bench/status_bench.py --evlake $(CARGO_TARGET_DIR)/release/evlake
	$(PYTHON) bench/silver_bench.py --evlake $(CARGO_TARGET_DIR)/release/evlake --events $(or $(EVENTS),1000000)
	$(PYTHON) bench/pipeline_bench.py --evlake $(CARGO_TARGET_DIR)/release/evlake --events $(or $(EVENTS),1000000)
	$(PYTHON) bench/pipeline_bench.py --evlake $(CARGO_TARGET_DIR)/release/evlake --events $(or $(EVENTS),1000000) --days 60
	$(PYTHON) bench/pipeline_bench.py --evlake $(CARGO_TARGET_DIR)/release/evlake --events 100000 --days 3650 --full-only
	$(PYTHON) bench/pipeline_bench.py --evlake $(CARGO_TARGET_DIR)/release/evlake --events 3000000 --days 3650 --full-only --reps 1
	$(PYTHON) bench/state_bench.py --evlake $(CARGO_TARGET_DIR)/release/evlake --events $(or $(EVENTS),1000000)

SPARK_VENV ?= $(HOME)/.cache/evlake-spark-venv
# A scratch lake under the build directory, rebuilt on every run (not a
# variable: `make spark-check SPARK_LAKE=/data/lake` must not wipe a real
# lake). To check a lake of your own: tools/spark_check.py --evlake BIN LAKE.
spark-check: build ## Not in CI: Apache Spark (PySpark, ~300 MB; needs Java 17+) reads every table of a lake built from sample_data/
	@java -version >/dev/null 2>&1 || { echo "spark-check needs Java 17+ (java not found)"; exit 2; }
	test -x $(SPARK_VENV)/bin/python || python3 -m venv $(SPARK_VENV)
	$(SPARK_VENV)/bin/python -c "import pyspark" 2>/dev/null || $(SPARK_VENV)/bin/python -m pip install --quiet pyspark
	rm -rf $(CARGO_TARGET_DIR)/spark-check-lake
	mkdir -p $(CARGO_TARGET_DIR)/spark-check-lake/typed $(CARGO_TARGET_DIR)/spark-check-lake/daily
	echo "SELECT event_id, user_id, session_id, event_timestamp, event_date, page_url, 0 AS _warnings FROM events WHERE event_type = 'page_view'" > $(CARGO_TARGET_DIR)/spark-check-lake/typed/page_views.sql
	echo "SELECT event_date, count(DISTINCT user_id) AS users, max(event_timestamp) AS last_event FROM events GROUP BY event_date" > $(CARGO_TARGET_DIR)/spark-check-lake/daily/active_users.sql
	$(EVLAKE) -q --lake $(CARGO_TARGET_DIR)/spark-check-lake run sample_data/2024-03-15.jsonl --processing-time 2024-03-16T02:00:00Z
	$(EVLAKE) -q --lake $(CARGO_TARGET_DIR)/spark-check-lake run sample_data/2024-03-16.jsonl.gz --processing-time 2024-03-17T02:00:00Z
	$(EVLAKE) -q --lake $(CARGO_TARGET_DIR)/spark-check-lake run sample_data/2024-03-19.jsonl --processing-time 2024-03-20T02:00:00Z --late-policy side-output
	$(EVLAKE) -q --lake $(CARGO_TARGET_DIR)/spark-check-lake snapshot balances --as-of 2024-03-18
	$(EVLAKE) -q --lake $(CARGO_TARGET_DIR)/spark-check-lake compact --min-files 2
	$(SPARK_VENV)/bin/python tools/spark_check.py --evlake $(EVLAKE) $(CARGO_TARGET_DIR)/spark-check-lake

FUZZ_SECONDS ?= 300
fuzz: ## Not in CI: coverage-guided fuzzing (libFuzzer) of the JSON scanner against serde_json and the timestamp parser against chrono, FUZZ_SECONDS each; installs cargo-fuzz
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
	@set -e; for t in json_scan rfc3339; do \
	  dict=; [ $$t = json_scan ] && dict=-dict=fuzz/json.dict; \
	  mkdir -p fuzz/corpus/$$t; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=512 $$dict; \
	done

lint: ## rustfmt check + clippy with warnings denied
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

clean: ## Remove the demo lake
	rm -rf $(DEMO_LAKE)
