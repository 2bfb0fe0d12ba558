# Tracecode: `make run` sets everything up and runs the service with demo data;
# `make test` runs the whole test suite. Both work on a fresh clone.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
RUST_SOURCES := $(wildcard core_rs/src/*.rs core_rs/src/py/*.rs) core_rs/Cargo.toml

.PHONY: setup browser wrk run test lint bench clean

setup: $(STAMP)

# Re-installs when pyproject.toml or the Rust sources change (the extension is rebuilt by maturin).
$(STAMP): pyproject.toml $(RUST_SOURCES)
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

# Debian packages a target needs, installed when missing: $(call apt,<binary>,<packages>).
apt = @test -e $(1) || { \
  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
  INSTALL="env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(2)"; \
  $$SUDO $$INSTALL || { $$SUDO apt-get update && $$SUDO $$INSTALL; }; }

# Debian's Chromium and its ChromeDriver for the consumer-page browser tests (tests/test_h5_browser.py),
# and a CJK font so the zh-CN pages render (screenshots) instead of empty boxes.
browser:
	$(call apt,/usr/bin/chromedriver,chromium chromium-driver)
	$(call apt,/usr/share/fonts/truetype/wqy/wqy-microhei.ttc,fonts-wqy-microhei)

# wrk, the HTTP load generator of loadtest-wrk and bench-verify.
wrk:
	$(call apt,/usr/bin/wrk,wrk)

run: setup
	$(BIN)/tracecode run

test: setup browser
	cd core_rs && cargo test --quiet
	$(BIN)/python -m pytest -q

# stubtest: app/_core.pyi must describe the built extension exactly (STYLE rule 2).
lint: setup
	$(BIN)/ruff check app workers tests bench loadtests
	$(BIN)/python -m mypy.stubtest app._core
	cd core_rs && cargo clippy --all-targets -- -D warnings

bench: setup
	$(BIN)/python -m pytest bench/bench_serial.py -q --benchmark-only

# Load tests (loadtests/): a local stack on 127.0.0.1 (var/loadtest), time-bounded, then stopped.
LOADTEST_TIME ?= 30s
LOADTEST_USERS ?= 50
WRK_TIME ?= 20s
.PHONY: loadtest loadtest-wrk bench-verify

loadtest: setup
	$(BIN)/python loadtests/stack.py --count 5000 -- $(BIN)/locust -f loadtests/locustfile.py \
	  --headless --only-summary -u $(LOADTEST_USERS) -r 10 --run-time $(LOADTEST_TIME)

loadtest-wrk: setup wrk
	loadtests/wrk_verify.sh --duration $(WRK_TIME)

# Issue 7 target: /v1/verify vs /ping throughput, one granian worker on CPU 0, wrk on CPU 1.
bench-verify: setup wrk
	$(BIN)/python bench/bench_verify.py

clean:
	-$(BIN)/tracecode services down
	rm -rf $(VENV) var core_rs/target
