"""--log-csv and the Python callback per evaluation: every record, every metric, flushed as written."""
import csv

import numpy as np

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
