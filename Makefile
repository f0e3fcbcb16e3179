# Set-up and entry points. `make demo` and `make test` work on a fresh machine with Python >= 3.11.
PYTHON ?= python3
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
CORES  ?= 2
STAMP  := $(VENV)/.installed-stamp

# Rules call the `srsim` console script: put the venv first on PATH for every recipe.
export PATH := $(BIN):$(PATH)

.PHONY: install demo test test-fast dry-run paper-dag lint clean-results

# torch is installed first and pinned (torch==2.13.0): on CPU machines pip takes the CPU build from
# the local wheel store instead of pulling gigabytes of CUDA packages; everything else then sees it
# satisfied.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[workflow,test]"
	touch $(STAMP)

install: $(STAMP)

# The target comes first on every snakemake line: --configfile takes several values and would read a
# target after it as one more config file (tests/test_readme.py runs these lines).
demo: install                ## the whole demo (config/config.yaml) on this machine
	$(BIN)/snakemake all --profile profiles/local --cores $(CORES) --configfile config/config.yaml

# The nbodykit engine's tests need nbodykit in its own venv: scripts/nbodykit-install.sh builds it once from
# ../shared/nbodykit into ~/.cache/srsim (20-40 min the first time, then reused) and prints its python; without
# the kit it says so in one line and those tests skip.
test: install                ## the test suite, slow tests included; prints the slowest tests at the end
	nbk=$$(scripts/nbodykit-install.sh) || nbk=""; \
	SRSIM_NBODYKIT_PYTHON=$${SRSIM_NBODYKIT_PYTHON:-$$nbk} $(BIN)/python -m pytest -q --durations=8

test-fast: install           ## the test suite without the end-to-end workflow runs
	$(BIN)/python -m pytest -q -m "not slow and not slurm"

dry-run: install             ## what the demo would run
	$(BIN)/snakemake all -n --cores $(CORES) --configfile config/config.yaml

paper-dag: install           ## the paper's full job list
	$(BIN)/snakemake all -n --configfile config/paper.yaml --quiet rules

lint: install                ## Snakemake's linter and snakefmt, as tests/test_lint.py runs them
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules

clean-results:
	rm -rf results .test/results
