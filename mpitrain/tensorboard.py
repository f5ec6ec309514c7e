"""``--tensorboard DIR``: every metrics record as TensorBoard scalars, with tensorboardX (an optional extra).

tensorboardX writes TensorBoard's event files with NumPy and protobuf alone (no deep-learning
framework), is maintained, and is one wheel: ``pip install 'mpitrain[tensorboard]'``. Each
numeric field of a record but ``step`` becomes a scalar of that name at that step (``loss``,
``metric``, ``epoch``, ``val_loss``, ``val_f1``, ...); rank 0 writes, and each record is flushed.
View with ``tensorboard --logdir DIR``.

>>> run = mt.train(..., on_log=TensorBoardLog("runs/tb"))  # doctest: +SKIP
"""
from __future__ import annotations

from numbers import Real

from .errors import UsageError


class TensorBoardLog:
    """An ``on_log`` callback (rank 0) writing each record's numbers as scalars into ``logdir``."""

    def __init__(self, logdir: str) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise UsageError("--tensorboard needs tensorboardX: pip install 'mpitrain[tensorboard]' "
                             "(or pip install tensorboardX)") from None
        self.writer = SummaryWriter(logdir)

    def __call__(self, record: dict) -> None:
        """Write one record's numeric fields at its step, and flush."""
        step = int(record["step"])
        for name, value in record.items():
            if name != "step" and isinstance(value, Real) and not isinstance(value, bool):
                self.writer.add_scalar(name, float(value), step)
        self.writer.flush()

    def close(self) -> None:
        """Close the event file."""
        self.writer.close()
