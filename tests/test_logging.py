"""--log-csv and the Python callback per evaluation: every record, every metric, flushed as written."""
import csv

import numpy as np
import pytest

import mpitrain as mt
from mpitrain.csvlog import CsvLog
from mpitrain.selection import Validation


def test_on_log_gets_each_evaluation_with_its_step_and_every_metric_and_the_csv_holds_the_same(tmp_path):
    comm = mt.world()
    data = mt.load("synthetic:classification,n=160,d=4,noise=1.0,seed=1", comm)
    val = mt.load("synthetic:classification,n=80,d=4,noise=1.0,seed=1,split=test", comm)
    model = mt.create_model("logistic", 4)
    path = tmp_path / "log.csv"
    log, records = CsvLog(str(path)), []

    def on_log(record):
        records.append(dict(record))
        log(record)
        rows = list(csv.reader(open(path)))  # flushed: what was logged is on disk already
        assert rows[-1][:2] == [str(record["step"]), list(k for k in record if k != "step")[-1]]

    validation = Validation(model, val, comm, every=3, metrics=("f1", "auc", "log_loss"))
    mt.train(model, data, comm, mt.GD(), steps=9, lr=0.5, validation=validation, on_log=on_log)
    log.close()
    scored = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in scored] == [3, 6, 9]
    assert all(set(r) == {"step", "val_loss", "val_accuracy", "val_f1", "val_auc", "val_log_loss"} for r in scored)
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == sum(len(r) - 1 for r in records)
    table = {(int(row["step"]), row["name"]): float(row["value"]) for row in rows}
    for record in records:
        for name, value in record.items():
            if name != "step":
                assert table[(record["step"], name)] == value  # repr round-trips the float exactly
    again = CsvLog(str(path))  # a resumed run appends, without a second header
    again({"step": 10, "loss": 0.5})
    again.close()
    lines = open(path).read().splitlines()
    assert lines.count("step,name,value") == 1 and lines[-1] == "10,loss,0.5"
    assert np.isfinite([table[(9, "val_auc")], table[(9, "val_f1")]]).all()


def read_scalars(folder):
    """{(tag, step): value} from the TensorBoard event files in ``folder`` (TFRecord framing read by hand)."""
    import os
    import struct

    event_pb2 = __import__("tensorboardX.proto.event_pb2", fromlist=["event_pb2"])
    out = {}
    for name in os.listdir(folder):
        data = open(os.path.join(folder, name), "rb").read()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            event = event_pb2.Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                out[(value.tag, event.step)] = value.simple_value
    return out


def test_tensorboard_scalars_hold_every_record(tmp_path):
    pytest.importorskip("tensorboardX")
    from mpitrain.tensorboard import TensorBoardLog

    comm = mt.world()
    data = mt.load("synthetic:classification,n=160,d=4,noise=1.0,seed=1", comm)
    val = mt.load("synthetic:classification,n=80,d=4,noise=1.0,seed=1,split=test", comm)
    model = mt.create_model("logistic", 4)
    log, records = TensorBoardLog(str(tmp_path / "tb")), []
    validation = Validation(model, val, comm, every=2, metrics=("auc",))
    mt.train(model, data, comm, mt.GD(), steps=6, lr=0.5, validation=validation,
             on_log=lambda r: (records.append(r), log(r)))
    log.close()
    scalars = read_scalars(tmp_path / "tb")
    want = {(name, r["step"]): value for r in records for name, value in r.items() if name != "step"}
    assert set(scalars) == set(want) and ("val_auc", 6) in scalars
    for key, value in want.items():
        assert scalars[key] == pytest.approx(value, rel=1e-6)  # TensorBoard keeps float32


def test_tensorboard_without_its_extra_names_the_extra(tmp_path, monkeypatch):
    import sys

    from mpitrain.errors import UsageError
    from mpitrain.tensorboard import TensorBoardLog

    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # as if not installed
    with pytest.raises(UsageError, match=r"pip install 'mpitrain\[tensorboard\]'"):
        TensorBoardLog(str(tmp_path / "tb"))
