"""A new user's first hour, run as the user runs it: defaults, config files, usage errors, progress."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from launch import ENV, mpiexec, run

pytestmark = pytest.mark.e2e


def test_train_with_only_data_picks_defaults_says_so_and_says_where_it_wrote(tmp_path):
    done = subprocess.run([*mpiexec(), "-n", "2", sys.executable, "-m", "mpitrain", "train", "--data", "digits"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**os.environ, **ENV})
    assert done.returncode == 0, done.stderr
    assert "defaults: --model softmax (from the labels" in done.stderr and "--algorithm gd" in done.stderr
    assert "--lr 0.1 (the default of --optimizer sgd)" in done.stderr
    written = [line for line in done.stderr.splitlines() if line.startswith("mpitrain: writing to runs/softmax-")]
    assert len(written) == 1
    out = tmp_path / written[0].split("writing to ")[1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "softmax" and summary["algorithm"] == "gd" and summary["steps"] == 200
    assert summary["final_train_metric"] > 0.95  # softmax regression on digits fits its training rows
    assert summary["config"]["model"] == "softmax" and summary["config"]["lr"] == 0.1


def test_a_data_set_smaller_than_the_default_batch_trains_with_all_its_rows_per_batch(tmp_path):
    done = run("train", "--data", "synthetic:classification,n=40,d=3", "--model", "mlp", "--steps", "5",
               "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    assert "--batch-size 40" in done.stderr.split("defaults:")[1].splitlines()[0]
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["settings"]["batch_size"] == 40


def test_a_printed_config_reruns_to_the_same_model_bitwise(tmp_path):
    flags = ["train", "--data", "synthetic:classification,n=600,d=5,classes=3", "--algorithm", "sgd",
             "--optimizer", "adam", "--epochs", "2", "--hidden", "8", "--seed", "3"]
    printed = run(*flags, "--print-config")
    assert printed.returncode == 0, printed.stderr
    assert 'model = "mlp"' in printed.stdout and "hidden = [8]" in printed.stdout
    (tmp_path / "run.toml").write_text(printed.stdout)
    again = run("train", "--config", str(tmp_path / "run.toml"), "--out", str(tmp_path / "again"))
    direct = run(*flags, "--out", str(tmp_path / "direct"))
    assert again.returncode == 0 and direct.returncode == 0, again.stderr + direct.stderr
    with np.load(tmp_path / "again" / "model.npz") as a, np.load(tmp_path / "direct" / "model.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            assert np.array_equal(a[key], b[key]), key


def test_flags_on_the_command_line_override_the_config_file(tmp_path):
    (tmp_path / "run.toml").write_text('data = "synthetic:regression,n=300,d=4"\nmodel = "linear"\nsteps = 50\n'
                                       "lr = 0.05\n")
    done = run("train", "--config", str(tmp_path / "run.toml"), "--epochs", "3", "--lr", "0.1",
               "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["config"]["lr"] == 0.1 and summary["config"]["epochs"] == 3 and "steps" not in summary["config"]


def test_a_usage_error_is_one_line_with_a_suggestion_and_no_usage_block():
    done = run("train", "--data", "digits", "--model", "softmx", ranks=1)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and "did you mean 'softmax'?" in lines[0] and "--help" in lines[1]
    assert "usage:" not in done.stderr


def test_a_config_key_that_is_no_flag_is_named_with_the_closest_flags(tmp_path):
    (tmp_path / "bad.toml").write_text("batchsize = 64\n")
    done = run("train", "--config", str(tmp_path / "bad.toml"), ranks=1)
    assert done.returncode == 2 and "'batchsize' is not a flag of train; did you mean batch-size" in done.stderr


def test_averaging_on_data_sorted_by_label_warns_once_with_the_numbers(tmp_path):
    from mpitrain.data import open_source

    source = open_source("synthetic:classification,n=800,d=4,classes=4,seed=1")
    X, y = source.read(0, source.n_total)
    order = np.argsort(y, kind="stable")
    (tmp_path / "sorted").mkdir()
    np.save(tmp_path / "sorted" / "X.npy", X[order])
    np.save(tmp_path / "sorted" / "y.npy", y[order])
    common = ["train", "--model", "softmax", "--data", str(tmp_path / "sorted"), "--epochs", "1", "--lr", "0.1"]
    sorted_run = run(*common, "--algorithm", "one-shot", "--out", str(tmp_path / "a"))
    assert sorted_run.returncode == 0, sorted_run.stderr
    assert sorted_run.stderr.count("the ranks hold very different labels (rank") == 1
    # Independently: the two blocks of 400 sorted rows, and the larger total variation distance.
    blocks = [np.bincount(y[order][:400].astype(int), minlength=4), np.bincount(y[order][400:].astype(int), minlength=4)]
    overall = (blocks[0] + blocks[1]) / 800
    distance = max(0.5 * np.abs(b / 400 - overall).sum() for b in blocks)
    found = re.search(r"over all ranks: [\d%, ]+; distance (\d\.\d\d)\)", sorted_run.stderr)
    assert found and float(found.group(1)) == round(distance, 2), sorted_run.stderr
    synchronous = run(*common, "--algorithm", "sgd", "--out", str(tmp_path / "b"))
    assert synchronous.returncode == 0 and "very different labels" not in synchronous.stderr


def test_a_batch_job_without_a_terminal_gets_plain_lines_and_a_terminal_gets_a_bar(tmp_path):
    import pty

    from mpitrain.progress import PlainProgress

    args = [*mpiexec(), "-n", "2", sys.executable, "-m", "mpitrain", "train", "--data",
            "synthetic:classification,n=4000,d=5", "--algorithm", "sgd", "--epochs", "2", "--out", str(tmp_path / "a")]
    batch = subprocess.run(args, capture_output=True, text=True, timeout=300, start_new_session=True,
                           env={**os.environ, **ENV})  # a new session has no controlling terminal
    assert batch.returncode == 0, batch.stderr
    assert "samples/s" not in batch.stderr and "step " in batch.stderr  # plain lines, no bar
    pid, fd = pty.fork()
    if pid == 0:  # the child: an interactive mpiexec, its terminal the pty
        os.environ.update(ENV)
        os.execv(args[0], [*args[:-1], str(tmp_path / "b")])
    screen = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, screen.decode(errors="replace")[-2000:]
    assert b"samples/s" in screen and b"%|" in screen  # tqdm's bar
    lines = []
    plain = PlainProgress(total=1000, every=0.0, stream=type("S", (), {"write": lines.append, "flush": lambda s: None})())
    plain.set_postfix(loss="0.5")
    plain.update(250)
    assert "25.0%" in "".join(lines) and "250/1,000 samples" in "".join(lines) and "loss 0.5" in "".join(lines)


def test_validation_and_early_stopping_from_the_command_line(tmp_path):
    data = "synthetic:classification,n=120,d=30,noise=2.0,classes=3,seed=7"
    done = run("train", "--data", data, "--model", "softmax", "--algorithm", "gd", "--lr", "0.5", "--steps", "3000",
               "--val-fraction", "0.25", "--eval-every", "5", "--early-stopping", "--patience", "3",
               "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["ended_early"] and summary["steps_run"] < 3000
    best = summary["validation"]
    assert best["monitor"] == "val_loss" and best["step"] == best["best_step"] + 15  # three evaluations later
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    scored = {r["step"]: r["val_loss"] for r in records if "val_loss" in r}
    assert min(scored.values()) == best["best_value"] and scored[best["best_step"]] == best["best_value"]
    assert "early stopping after step" in done.stdout
    refused = run("train", "--data", data, "--early-stopping", "--out", str(tmp_path / "x"), ranks=1)
    assert refused.returncode == 2 and "--early-stopping needs validation rows" in refused.stderr
