# mpitrain: `make demo` trains on 2 ranks, `make test` runs every test. Both create .venv first.
#
# On a cluster, use the site's MPI instead of the MPICH wheel, for example:
#   make test EXTRAS=test MPIEXEC=srun MPI_SIZES="2 4"
# (with mpi4py built against that MPI: `pip install --no-binary mpi4py mpi4py`).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= mpich,test,progress
MPIEXEC ?= $(BIN)/mpiexec
MPI_SIZES ?= 1 2 3 4 5
TIMEOUT ?= 900
PYTEST_FLAGS ?= -q -p no:cacheprovider

# More ranks than cores (as in CI): make MPICH yield instead of busy-polling, start ranks with
# fork, and give each rank one BLAS thread.
export MPIR_CVAR_CH4_PROGRESS_THROTTLE ?= true
export MPIR_CVAR_POLLS_BEFORE_YIELD ?= 1
export HYDRA_LAUNCHER ?= fork
export OMP_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1
export MPIEXEC

.PHONY: install demo test test-serial test-mpi mutation mutation-report clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $@

demo: install
	$(MPIEXEC) -n 2 $(BIN)/python -m mpitrain train --model logistic --algorithm sgd \
	    --data synthetic:classification --test-data synthetic:classification,split=test,n=2000 \
	    --epochs 5 --lr 0.5 --batch-size 64 --out runs/demo

test: test-serial test-mpi

test-serial: install
	timeout $(TIMEOUT) $(BIN)/python -m pytest $(PYTEST_FLAGS) -m "not mpi" tests

# pytest-mpi launches nothing: each size runs one whole pytest session on every rank.
test-mpi: install
	@set -e; for n in $(MPI_SIZES); do \
	    echo "== MPI tests on $$n rank(s): $(MPIEXEC) -n $$n"; \
	    MPITRAIN_TEST_NP=$$n timeout $(TIMEOUT) $(MPIEXEC) -n $$n $(BIN)/python -m pytest \
	        $(PYTEST_FLAGS) --with-mpi -m mpi tests/mpi tests/collectives; \
	done
	@echo "== hierarchical SGD on two fake nodes (MPICH: MPIR_CVAR_NUM_CLIQUES=2), 4 ranks"
	MPIR_CVAR_NUM_CLIQUES=2 MPITRAIN_TEST_NP=4 timeout $(TIMEOUT) $(MPIEXEC) -n 4 $(BIN)/python -m pytest \
	    $(PYTEST_FLAGS) --with-mpi -m mpi tests/mpi/test_aggregate.py -k hierarchical

# Mutation testing of the core (slow: hours on 2 cores; not part of `make test`). Mutants go
# into a copy under build/mutation, sessions resume where they stopped; MODULES picks targets of
# mutation.toml (default: all), MUTATION_FLAGS=--retest-survivors tests survivors again.
# The report: build/mutation/report.md; the last recorded score: docs/mutation.md.
MODULES ?=
MUTATION_SIZES ?= 2 3
MUTATION_FLAGS ?=

$(VENV)/.mutation-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet 'cosmic-ray>=8.3,<9'
	@touch $@

mutation: $(VENV)/.mutation-installed
	$(BIN)/python scripts/mutation.py run $(MODULES) --sizes "$(MUTATION_SIZES)" $(MUTATION_FLAGS)

mutation-report: $(VENV)/.mutation-installed
	$(BIN)/python scripts/mutation.py report

clean:
	rm -rf $(VENV) build runs *.egg-info
