# evlake: two commands on a fresh machine: `make demo` and `make test`.
# Debug builds share one target dir outside the clone (DataFusion is heavy:
# ~6 min clean in debug, ~31 min in release), so only `make bench` builds release.

CARGO_TARGET_DIR ?= $(HOME)/.cache/evlake-target
export CARGO_TARGET_DIR
VENV ?= $(HOME)/.cache/evlake-venv
PYTHON := $(VENV)/bin/python
EVLAKE := $(CARGO_TARGET_DIR)/debug/evlake
LAKE ?= lake

.PHONY: help build test demo bench lint venv clean

help: ## Show the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-6s %s\n", $$1, $$2}'

build: ## Build the debug binary (shared by demo and tests)
	cargo build

$(PYTHON):
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet duckdb pyarrow

venv: $(PYTHON) ## Python venv with duckdb + pyarrow (interop test, bench)

test: $(PYTHON) ## Run every test (unit + the one integration binary), installing what they need
	EVLAKE_PYTHON=$(PYTHON) cargo test

demo: build ## Ingest sample_data/ (three arrival batches) into ./lake, re-run it (a no-op), build silver, report
	rm -rf $(LAKE)
	$(EVLAKE) --lake $(LAKE) ingest sample_data/2024-03-15.jsonl    --processing-time 2024-03-16T02:00:00Z
	$(EVLAKE) --lake $(LAKE) ingest sample_data/2024-03-16.jsonl.gz --processing-time 2024-03-17T02:00:00Z
	$(EVLAKE) --lake $(LAKE) ingest sample_data/2024-03-19.jsonl    --processing-time 2024-03-20T02:00:00Z
	@echo "--- re-running the same batches is a no-op:"
	$(EVLAKE) --lake $(LAKE) ingest sample_data/
	@echo "--- bronze partitions and quarantine:"
	@find $(LAKE)/bronze $(LAKE)/quarantine -type f | sort
	@echo "--- evlake silver (sessionized events + sessions):"
	$(EVLAKE) --lake $(LAKE) silver --processing-time 2024-03-20T03:00:00Z
	@echo "--- evlake status:"
	$(EVLAKE) --lake $(LAKE) status
	@echo "--- evlake lateness:"
	$(EVLAKE) --lake $(LAKE) lateness
	@echo "--- evlake query:"
	$(EVLAKE) --lake $(LAKE) query "SELECT event_date, count(*) AS events, sum(CAST(is_late AS INT)) AS late, count(DISTINCT event_id) AS distinct_ids FROM bronze_events GROUP BY 1 ORDER BY 1"
	$(EVLAKE) --lake $(LAKE) query "SELECT session_date, count(*) AS sessions, sum(event_count) AS events, sum(CAST(converted AS INT)) AS converted, avg(duration_us) / 1e6 AS avg_seconds FROM sessions GROUP BY 1 ORDER BY 1"

bench: $(PYTHON) ## Release build; evlake vs DuckDB ingest and silver (EVENTS=5000000 for the big run); status vs lake size
	cargo build --release
	$(PYTHON) bench/ingest_bench.py --evlake $(CARGO_TARGET_DIR)/release/evlake --events $(or $(EVENTS),1000000)
	$(PYTHON) bench/status_bench.py --evlake $(CARGO_TARGET_DIR)/release/evlake
	$(PYTHON) bench/silver_bench.py --evlake $(CARGO_TARGET_DIR)/release/evlake --events $(or $(EVENTS),1000000)

lint: ## rustfmt check + clippy with warnings denied
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

clean: ## Remove the demo lake
	rm -rf $(LAKE)
