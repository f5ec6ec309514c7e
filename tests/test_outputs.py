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
    with pytest.raises(outputs.OutputError, match=f"cannot write {path}: disk full"):
        outputs.write_npy(str(path), np.zeros(3))
    np.testing.assert_array_equal(np.load(path), np.ones(3))
    assert os.listdir(tmp_path) == ["model.npy"]


def steps_in(path):
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_metrics_log_appends_and_flushes_each_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 99}\n')  # a new log starts empty
    log = outputs.MetricsLog(str(path))
    assert path.read_text() == ""
    with open(path) as follower:  # as `tail -f` reads it: the same file, growing
        log.append({"step": 1, "loss": 0.5})
        assert [json.loads(line)["step"] for line in follower.read().splitlines()] == [1]  # flushed at once
        log.append({"step": 2, "loss": 0.25})
        log.close()
        log.append({"step": 3, "loss": 0.125})
        assert [json.loads(line)["step"] for line in follower.read().splitlines()] == [2, 3]
    assert steps_in(path) == [1, 2, 3] and len(log.lines) == 3


def test_metrics_log_rewinds_to_the_lines_of_a_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = outputs.MetricsLog(str(path))
    for step in (1, 2, 3, 4):
        log.append({"step": step})
    saved = log.lines[:2]  # what a checkpoint at step 2 stored
    resumed = outputs.MetricsLog(str(path))
    resumed.lines = saved
    assert steps_in(path) == [1, 2]
    resumed.append({"step": 3})
    assert steps_in(path) == [1, 2, 3]


def test_a_full_disk_while_logging_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    log = outputs.MetricsLog(str(path))
    log.append({"step": 1})
    log.close()
    monkeypatch.setattr(outputs, "open", lambda *args, **kwargs: open("/dev/full", "w"), raising=False)
    with pytest.raises(outputs.OutputError, match=f"cannot write {path}: No space left on device"):
        log.append({"step": 2})


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_files_follow_the_umask(tmp_path, mask, monkeypatch):
    monkeypatch.setattr(outputs, "_UMASK", None)
    old = os.umask(mask)
    try:
        outputs.write_json(str(tmp_path / "summary.json"), {})
        outputs.write_npy(str(tmp_path / "predictions.npy"), np.zeros(2))
        outputs.MetricsLog(str(tmp_path / "metrics.jsonl")).append({"step": 1})
    finally:
        os.umask(old)
    for name in ("summary.json", "predictions.npy", "metrics.jsonl"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o666 & ~mask, name


def test_outputs_must_not_name_an_input_or_each_other(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("a,b\n1,2\n")
    link = tmp_path / "link.csv"
    link.symlink_to(data)
    inputs = {"--data": str(data)}
    outputs.check_distinct({"--trace": str(tmp_path / "t.json")}, inputs)
    for clash in (str(data), str(link), str(tmp_path / "sub" / ".." / "d.csv")):
        with pytest.raises(outputs.OutputError, match=r"--trace .* is the same file as --data"):
            outputs.check_distinct({"--trace": clash}, inputs)
    with pytest.raises(outputs.OutputError, match="--trace .*model.npz is the same file as the model file"):
        outputs.check_distinct({"the model file": str(tmp_path / "model.npz"),
                                "--trace": str(tmp_path / "." / "model.npz")}, inputs)
    (tmp_path / "dir").mkdir()
    assert outputs.spec_files(str(tmp_path / "dir")) == [str(tmp_path / "dir" / "X.npy"),
                                                         str(tmp_path / "dir" / "y.npy")]
    assert outputs.spec_files("synthetic:regression") == []
