"""``--log-csv``: every metrics record (training lines and validation scores) appended to a CSV file.

The file is long-form, one row per value: ``step,name,value`` (e.g. ``120,val_f1,0.93``), so
records with different fields (training, validation, an algorithm's extras) share one header,
and a resumed run appends to the same file. Each record is flushed as it is written. The wide
table: ``pandas.read_csv(path).pivot_table(index="step", columns="name", values="value", aggfunc="last")``.

>>> run = mt.train(..., on_log=CsvLog("log.csv"))  # doctest: +SKIP
"""
from __future__ import annotations

import csv
import os

HEADER = ("step", "name", "value")


class CsvLog:
    """An ``on_log`` callback (rank 0) appending each record to ``path``; ``close`` when done."""

    def __init__(self, path: str) -> None:
        fresh = not os.path.exists(path) or os.path.getsize(path) == 0
        self.file = open(path, "a", newline="")
        self.writer = csv.writer(self.file)
        if fresh:
            self.writer.writerow(HEADER)
            self.file.flush()

    def __call__(self, record: dict) -> None:
        """Append one record's values (all but ``step``) and flush."""
        step = record.get("step", "")
        self.writer.writerows((step, name, value) for name, value in record.items() if name != "step")
        self.file.flush()

    def close(self) -> None:
        """Close the file."""
        self.file.close()
