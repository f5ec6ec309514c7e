"""Atomic output files."""
import json
import os

import numpy as np
import pytest

from mpitrain import outputs


def test_write_atomic_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "summary.json"
    outputs.write_json(str(path), {"a": 1})
    outputs.write_json(str(path), {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert os.listdir(tmp_path) == ["summary.json"]


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npy"
    outputs.write_npy(str(path), np.ones(3))

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        outputs.write_npy(str(path), np.zeros(3))
    np.testing.assert_array_equal(np.load(path), np.ones(3))
    assert os.listdir(tmp_path) == ["model.npy"]


def test_metrics_log_writes_one_json_object_per_line(tmp_path):
    log = outputs.MetricsLog(str(tmp_path / "metrics.jsonl"), every=3600)
    log.append({"step": 1, "loss": 0.5})
    assert not (tmp_path / "metrics.jsonl").exists()  # buffered until close or the interval
    log.append({"step": 2, "loss": 0.25})
    log.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]
