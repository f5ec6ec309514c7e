# mpitrain: `make demo` trains on 2 ranks, `make test` runs every test. Both create .venv first.
# `make test` runs the tests under the MPICH wheel (.venv), over two fake nodes, and the MPI tests
# under the system's Open MPI (.venv-openmpi); `make test-openmpi` needs `apt-get install
# openmpi-bin libopenmpi-dev` (or the site's Open MPI on PATH). `make test-slurm` runs a job on a one-node
# Slurm cluster it starts itself (scripts/slurm/test-cluster.sh).
#
# On a cluster, use the site's MPI instead of the MPICH wheel, for example:
#   make test-serial test-mpi EXTRAS=test MPIEXEC=srun MPI_SIZES="2 4"
# (with mpi4py built against that MPI: `pip install --no-cache-dir --no-binary mpi4py mpi4py`).

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

# Open MPI: a second environment whose mpi4py is compiled against it (--no-cache-dir: pip would
# otherwise reuse a wheel built earlier against another MPI). As root it runs only when told to,
# more ranks than cores only with oversubscription, and it should yield instead of busy-polling.
OMPI_VENV ?= .venv-openmpi
OMPI_MPIEXEC ?= $(firstword $(shell command -v mpirun.openmpi) mpirun) --oversubscribe
OMPI_ENV := OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1

.PHONY: install demo test test-serial test-mpi test-mpi-fakenodes test-openmpi test-slurm mutation mutation-report clean

install: $(VENV)/.installed

# MPI4PY_SOURCE=1 compiles mpi4py against the MPI whose mpicc is on PATH (see test-openmpi).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(if $(MPI4PY_SOURCE),$(BIN)/python -m pip install --quiet --no-cache-dir --no-binary mpi4py mpi4py)
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $@

demo: install
	$(MPIEXEC) -n 2 $(BIN)/python -m mpitrain train --model logistic --algorithm sgd \
	    --data synthetic:classification --test-data synthetic:classification,split=test,n=2000 \
	    --epochs 5 --lr 0.5 --batch-size 64 --out runs/demo

test: test-serial test-mpi test-mpi-fakenodes test-openmpi

test-serial: install
	timeout $(TIMEOUT) $(BIN)/python -m pytest $(PYTEST_FLAGS) -m "not mpi" tests

# pytest-mpi launches nothing: each size runs one whole pytest session on every rank. Every size
# runs; the failing ones are listed at the end.
test-mpi: install
	@failed=""; for n in $(MPI_SIZES); do \
	    echo "== MPI tests on $$n rank(s): $(MPIEXEC) -n $$n"; \
	    MPITRAIN_TEST_NP=$$n timeout $(TIMEOUT) $(MPIEXEC) -n $$n $(BIN)/python -m pytest \
	        $(PYTEST_FLAGS) --with-mpi -m mpi tests/mpi tests/collectives || failed="$$failed $$n"; \
	done; \
	if [ -n "$$failed" ]; then echo "== MPI tests FAILED on rank count(s):$$failed ($(MPIEXEC))"; exit 1; fi

# The MPI tests at 4 ranks over two fake nodes: MPICH splits this host's ranks into 2 cliques,
# so the node-aware (hierarchical) allreduce and auto's choice of it run without a cluster.
test-mpi-fakenodes: install
	MPIR_CVAR_NUM_CLIQUES=2 $(MAKE) --no-print-directory test-mpi MPI_SIZES=4

# The MPI tests under the system's Open MPI (OMPI_SIZES, default 1 2 3 4 5): mpi4py's binary wheel
# loads it (MPI4PY_MPIABI=openmpi), so no compiler is needed; MPI4PY_SOURCE=1 compiles mpi4py
# against the Open MPI on PATH instead. OMPI_SERIAL=1 also runs the serial tests under it.
OMPI_SIZES ?= 1 2 3 4 5
test-openmpi:
	@command -v mpirun.openmpi >/dev/null || command -v mpirun >/dev/null || { echo "Open MPI not found: apt-get install openmpi-bin libopenmpi-dev"; exit 1; }
	$(OMPI_ENV) MPI4PY_MPIABI=openmpi $(MAKE) --no-print-directory $(if $(OMPI_SERIAL),test-serial) test-mpi \
	    VENV=$(OMPI_VENV) EXTRAS=test,progress MPI_SIZES="$(OMPI_SIZES)" MPIEXEC="$(OMPI_MPIEXEC)"

test-slurm: install
	timeout 900 scripts/slurm/test-cluster.sh

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
	rm -rf $(VENV) $(OMPI_VENV) build runs *.egg-info
