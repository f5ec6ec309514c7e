"""Phase timing and Chrome-trace output."""
import time

import numpy as np

from mpitrain.timeline import COMPUTE, DATA, PHASES, REDUCE, Timeline, chrome_trace


def test_marks_charge_consecutive_non_overlapping_spans():
    t = Timeline(record=True)
    for _ in range(3):
        time.sleep(0.002)
        t.mark(DATA)
        time.sleep(0.004)
        t.mark(COMPUTE)
        t.skip()
        t.mark(REDUCE)
    spans = t.span_array()
    assert spans.shape == (9, 3)
    assert (spans[1:, 1] >= spans[:-1, 2]).all() and (spans[:, 2] >= spans[:, 1]).all()
    assert t.totals[COMPUTE] >= 0.012 and t.totals[DATA] >= 0.006
    assert abs(sum(t.totals) - spans[:, 2].sum() + spans[:, 1].sum()) < 1e-9


def test_without_recording_only_totals_are_kept():
    t = Timeline()
    t.mark(DATA)
    assert t.span_array().shape == (0, 3) and t.totals[DATA] > 0


def test_chrome_trace_has_a_lane_per_rank():
    spans = np.array([[0, 0.0, 0.5], [1, 0.5, 1.0], [0, 0.1, 0.2]])
    doc = chrome_trace(spans, np.array([0, 0, 3]), {"x": 1})
    lanes = [e for e in doc["traceEvents"] if e["ph"] == "M"]
    assert [e["args"]["name"] for e in lanes] == ["rank 0", "rank 3"]
    complete = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert [(e["name"], e["tid"], e["ts"], e["dur"]) for e in complete] == [
        (PHASES[0], 0, 0.0, 5e5), (PHASES[1], 0, 5e5, 5e5), (PHASES[0], 3, 1e5, 1e5)]
