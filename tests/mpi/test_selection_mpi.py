"""Validation while training and early stopping: the same stop step and best model at any number of
ranks, and a resumed run keeps its patience and its best model."""
import os
import signal
import tempfile

import numpy as np
import pytest
from mpi4py import MPI

import mpitrain as mt
from mpitrain.selection import EarlyStopping, Validation

pytestmark = pytest.mark.mpi
TRAIN = "synthetic:classification,n=90,d=30,noise=2.0,classes=3,seed=7"  # few noisy rows: gd overfits
VAL = "synthetic:classification,n=400,d=30,noise=2.0,classes=3,seed=7,split=test"


def early_run(comm, out=None, resume=None, on_log=None):
    data, val = mt.load(TRAIN, comm), mt.load(VAL, comm)
    model = mt.create_model("softmax", data.n_features, n_classes=3)
    validation = Validation(model, val, comm, every=5, early=EarlyStopping("val_loss", patience=4, min_delta=1e-6))
    run = mt.train(model, data, comm, mt.GD(), steps=3000, lr=0.5, validation=validation, out=out, resume=resume,
                   on_log=on_log, checkpoint_every=10 if out else 0)
    return run, validation


def test_early_stopping_stops_at_the_same_step_with_the_same_best_model_as_one_process(comm):
    run, validation = early_run(comm)
    alone, alone_validation = early_run(mt.Comm(MPI.COMM_SELF))  # every row on this rank: the serial reference
    assert run.result.ended_early and run.result.steps < 3000
    assert run.result.steps == alone.result.steps and validation.best_step == alone_validation.best_step
    # gd's sums round differently on other rank counts: the parameters agree to rounding.
    np.testing.assert_allclose(run.result.theta, alone.result.theta, rtol=1e-9, atol=1e-12)
    # The result is the best evaluation's model: scoring it again gives the best value.
    val = mt.load(VAL, comm)
    loss, _ = mt.evaluate(mt.create_model("softmax", 30, n_classes=3), run.result.theta, val, comm)
    assert loss == pytest.approx(validation.best, rel=1e-12)
    assert run.summary["validation"]["best_step"] == validation.best_step and run.summary["ended_early"]


def test_a_resumed_run_keeps_its_patience_and_best_model(comm):
    folder = MPI.COMM_WORLD.bcast(tempfile.mkdtemp(prefix="mpitrain-select-") if comm.rank == 0 else None)
    whole, whole_validation = early_run(comm, out=f"{folder}/whole")

    def stop(record):  # rank 0's callback: a signal after an improvement, before early stopping ends the run
        if record.get("step") == whole_validation.best_step + 5 and "val_loss" in record:
            os.kill(os.getpid(), signal.SIGUSR1)

    first, _ = early_run(comm, out=f"{folder}/cut", on_log=stop)
    assert first.stopped
    resumed, resumed_validation = early_run(comm, out=f"{folder}/cut", resume="auto")
    assert resumed.result.steps == whole.result.steps
    assert resumed_validation.best_step == whole_validation.best_step
    assert np.array_equal(resumed.result.theta, whole.result.theta)
