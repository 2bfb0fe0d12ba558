# Tracecode: `make run` sets everything up and runs the service with demo data;
# `make test` runs the whole test suite. Both work on a fresh clone.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
RUST_SOURCES := $(wildcard core_rs/src/*.rs) core_rs/Cargo.toml

.PHONY: setup browser run test lint bench clean

setup: $(STAMP)

# Re-installs when pyproject.toml or the Rust sources change (the extension is rebuilt by maturin).
$(STAMP): pyproject.toml $(RUST_SOURCES)
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

# Debian's Chromium and its ChromeDriver for the consumer-page browser tests (tests/test_h5_browser.py).
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  PKGS="chromium chromium-driver"; \
	  INSTALL="env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$PKGS"; \
	  $$SUDO $$INSTALL || { $$SUDO apt-get update && $$SUDO $$INSTALL; }; }

run: setup
	$(BIN)/tracecode run

test: setup browser
	cd core_rs && cargo test --quiet
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check app workers tests bench
	cd core_rs && cargo clippy --all-targets -- -D warnings

bench: setup
	$(BIN)/python -m pytest bench/bench_serial.py -q --benchmark-only

clean:
	-$(BIN)/tracecode services down
	rm -rf $(VENV) var core_rs/target
