# The two commands of the README: `make run` (the main job) and `make test`.
# Both create .venv (Python >= 3.12) when it is missing; see scripts/venv.sh.
VENV := .venv
BIN := $(VENV)/bin

# Numba's on-disk cache notices edits to a function's own file only, not to the jitted code it calls
# in other modules; the cache lives here and is dropped whenever any source file changes.
NUMBA_CACHE := .numba_cache
export NUMBA_CACHE_DIR := $(abspath $(NUMBA_CACHE))
SOURCES := $(shell find engine feeds strategies bench -name '*.py' 2>/dev/null)

.PHONY: venv run test bench clean

venv:
	@scripts/venv.sh

$(NUMBA_CACHE)/.stamp: $(SOURCES)
	@rm -rf $(NUMBA_CACHE) && mkdir -p $(NUMBA_CACHE) && touch $@

run: venv $(NUMBA_CACHE)/.stamp
	@scripts/run.sh

test: venv $(NUMBA_CACHE)/.stamp
	@scripts/test-deps.sh
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: venv $(NUMBA_CACHE)/.stamp
	$(BIN)/hftmm bench feed

clean:
	rm -rf $(VENV) $(NUMBA_CACHE) replay_data/generated
