# The two commands a newcomer needs: `make train` (set up, train the tutorial's classifier on
# Fashion-MNIST, print its test accuracy) and `make test` (set up, run the test suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FASHION_DIR := /usr/share/datasets/fashion-mnist
RUN ?= runs/tutorial
PRESET ?= tutorial

.PHONY: venv data browser train test lint bench clean

venv: $(VENV)/.installed

# torch is pinned here for a reproducible set-up; the package itself asks for torch>=2.3.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Real data from Debian's packages, where apt is available and the files are not there yet:
# Fashion-MNIST (dataset-fashion-mnist) and the Tang/Song poems for the char-level LM (fortunes-zh).
FORTUNES_DIR := /usr/share/games/fortunes
data:
	@missing=""; \
	[ -f $(FASHION_DIR)/t10k-labels-idx1-ubyte.gz ] || [ -f $(FASHION_DIR)/t10k-labels-idx1-ubyte ] || missing="$$missing dataset-fashion-mnist"; \
	[ -f $(FORTUNES_DIR)/tang300 ] || missing="$$missing fortunes-zh"; \
	if [ -z "$$missing" ]; then \
		echo "data: Fashion-MNIST and fortunes-zh found"; \
	elif command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else \
		echo "data: apt-get not available; missing:$$missing (rnnflow looks them up or downloads where it can)"; \
	fi

# Debian's chromium for the browser tests of `rnnflow serve` (tests/serve/test_browser.py;
# Playwright drives /usr/bin/chromium, its own browser download is never used), and a CJK font
# so poems render in its screenshots. Installed where apt is available and chromium is missing;
# otherwise (or if the install fails) those tests are skipped and say why.
browser:
	@if [ -x /usr/bin/chromium ]; then \
		echo "browser: /usr/bin/chromium found"; \
	elif command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		{ $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
			chromium chromium-driver fonts-wqy-microhei; } \
		|| echo "browser: install failed; the browser tests will be skipped"; \
	else \
		echo "browser: apt-get not available; the browser tests will be skipped"; \
	fi

# A second `make train` does not start over: it continues an interrupted run (config.json but no
# summary.json yet) or, for a finished one, evaluates it again and says how to train anew.
train: venv data
	@if [ -f $(RUN)/summary.json ]; then \
		echo "make train: $(RUN) holds a finished run (evaluated below); to train again: rm -rf $(RUN) && make train, or make train RUN=runs/another"; \
	elif [ -f $(RUN)/config.json ]; then \
		echo "make train: continuing the interrupted run in $(RUN) (to start over: rm -rf $(RUN))"; \
		$(BIN)/rnnflow train --resume $(RUN); \
	else \
		$(BIN)/rnnflow train --preset $(PRESET) --dataset fashion-mnist --out $(RUN); \
	fi
	$(BIN)/rnnflow evaluate $(RUN)

test: venv data browser
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check rnnflow tests benchmarks tools
	$(BIN)/ruff format --check rnnflow tests benchmarks tools

bench: venv
	$(BIN)/python -m benchmarks.bench_recurrence

clean:
	rm -rf $(VENV) .pytest_cache
