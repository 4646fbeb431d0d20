# The two set-up commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
# `make test-fast` is the development loop: every test but the slow ones (real servers, browsers, kills, clusters).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_OUT ?= demo-out

.PHONY: demo test test-fast install browser bench quality clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "retouch needs Python >= 3.11; set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/retouch demo -o $(DEMO_OUT)

# Browser tests drive Debian's chromium; as root on Debian/Ubuntu it is installed here, elsewhere they skip.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: /usr/bin/chromium not found; browser tests will be skipped"; fi; \
	fi

test: $(STAMP) browser
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	$(BIN)/python -m benchmarks.speed && $(BIN)/python -m benchmarks.batch_throughput && $(BIN)/python -m benchmarks.api_load && $(BIN)/python -m benchmarks.pyifd_compare && $(BIN)/python -m benchmarks.clone_robustness && $(BIN)/python -m benchmarks.thumbnails

quality: $(STAMP)
	$(BIN)/python -m benchmarks.quality

clean:
	rm -rf $(VENV) $(DEMO_OUT) bench-out .pytest_cache
