# The two commands of the README: `make run` (the main job) and `make test`.
# Both create .venv (Python >= 3.12) when it is missing; see scripts/venv.sh.
# Numba's cache is the package's choice (engine/core/kernel_cache.py: ~/.cache/hftmm/numba, a folder per
# state of the sources), the same for make and for .venv/bin/hftmm; NUMBA_CACHE_DIR overrides it.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv compile run test bench clean

venv:
	@scripts/venv.sh

# every kernel into the cache, a line per group; seconds when nothing changed
compile: venv
	@$(BIN)/hftmm compile

# compiled first: the session's clock starts with every kernel in the cache
run: compile
	@scripts/run.sh

test: venv
	@scripts/test-deps.sh
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: compile
	$(BIN)/hftmm bench feed

clean:
	rm -rf $(VENV) replay_data/generated
