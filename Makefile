# Tracecode: `make run` sets everything up and runs the service with demo data;
# `make test` runs the whole test suite. Both work on a fresh clone.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
RUST_SOURCES := $(wildcard core_rs/src/*.rs core_rs/src/py/*.rs) core_rs/Cargo.toml

.PHONY: setup browser wrk console run test lint bench clean

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

# The office console (console/, served at /console) and the staff mobile app (its second entry,
# console/mobile + src/mobile, served at /m): `npm ci` when node_modules is missing or
# package-lock.json changed, `vite build` of both into console/dist and console/dist/m when a
# source changed.
CONSOLE_SOURCES := $(shell find console/src console/mobile -type f 2>/dev/null) \
  $(wildcard console/index.html console/vite.config.ts console/vite.mobile.config.ts \
  console/tsconfig.json console/package.json)
CONSOLE_DEPS := console/node_modules/.installed-stamp
CONSOLE_BUILD := console/dist/.built-stamp
NPM := @command -v npm >/dev/null || { echo "make console: npm is not on PATH; install Node.js 20 or later with npm (Debian: apt-get install nodejs npm)"; exit 1; }

console: $(CONSOLE_BUILD)

$(CONSOLE_DEPS): console/package-lock.json
	$(NPM)
	cd console && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(CONSOLE_BUILD): $(CONSOLE_DEPS) $(CONSOLE_SOURCES)
	$(NPM)
	cd console && npm run build:console --silent -- --logLevel warn
	cd console && npm run build:m --silent -- --logLevel warn
	@touch $@

run: setup console
	$(BIN)/tracecode run

# tests/test_media_s3.py starts s3rver (an S3-protocol server on disk, from npm) to store photos
# in: installed from tests/s3server/package-lock.json, again only when the lock file changed.
S3SERVER_DEPS := tests/s3server/node_modules/.installed-stamp

$(S3SERVER_DEPS): tests/s3server/package-lock.json
	$(NPM)
	cd tests/s3server && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# cargo test, the console's unit tests (Vitest, with the type check) and mypy's check of app/
# and workers/ run side by side (each one's output printed whole once all three are done, under
# var/test-*.log too; ~70 s one after another), before pytest, whose end-to-end tests use the
# built console. app/ and workers/ are compiled
# to bytecode first: the suite starts hundreds of Python processes (the CLI, `tracecode run`'s
# children, workers), and with PYTHONDONTWRITEBYTECODE set, as on this machine kind, each one
# compiled the modules it imports again (~70 ms a CLI command here). pytest runs one worker more
# than the machine has cores: a worker spends part of its time waiting on servers, subprocesses
# and browsers it started, and the spare one fills that (2 cores: 14m32s with two workers,
# 12m25s with three, one run after the other on one machine).
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(len(os.sched_getaffinity(0)) + 1)")
test: setup browser console $(S3SERVER_DEPS)
	@mkdir -p var && set +e; \
	(cd core_rs && cargo test --quiet) > var/test-cargo.log 2>&1 & cargo=$$!; \
	(cd console && npm test --silent) > var/test-console.log 2>&1 & console=$$!; \
	$(BIN)/python -m mypy > var/test-mypy.log 2>&1; mypy=$$?; \
	wait $$cargo; cargo=$$?; wait $$console; console=$$?; \
	cat var/test-cargo.log var/test-console.log var/test-mypy.log; \
	echo "cargo test: exit $$cargo; console npm test: exit $$console; mypy: exit $$mypy"; \
	test $$cargo -eq 0 && test $$console -eq 0 && test $$mypy -eq 0
	$(BIN)/python -m compileall -q -j 0 app workers > /dev/null
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --durations=25 -m "not alone"
	$(BIN)/python -m pytest -q -m alone

# stubtest: app/_core.pyi must describe the built extension exactly (STYLE rule 2).
lint: setup
	$(BIN)/ruff check app workers tests bench loadtests
	$(BIN)/python -m mypy
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

# Issues 7 and 21: /v1/verify and /ping against the bare framework (bench/bare_app.py) and each
# other, one granian worker on CPU 0, wrk on CPU 1.
bench-verify: setup wrk
	$(BIN)/python bench/bench_verify.py

clean:
	-$(BIN)/tracecode services down
	rm -rf $(VENV) var core_rs/target console/node_modules console/dist
