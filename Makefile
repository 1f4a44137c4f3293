# Two commands matter: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 4180

.PHONY: demo test lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml scripts/bootstrap-venv.sh
	PYTHON=$(PYTHON) sh scripts/bootstrap-venv.sh $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/azure-auth-proxy demo --port $(PORT)

test: $(STAMP)
	sh scripts/ensure-debs.sh nginx:nginx redis-server:redis-server chromium:chromium chromium-driver:chromedriver
	sh scripts/with-redis.sh $(BIN)/coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/coverage report --skip-covered --sort=cover | tail -n 25

lint: $(STAMP)
	$(BIN)/ruff check proxy tests
	$(BIN)/mypy
	sh scripts/lint-deploy.sh

clean:
	rm -rf $(VENV) .coverage .pytest_cache .mypy_cache .ruff_cache
