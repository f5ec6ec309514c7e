"""A model of your own: a 2-layer tanh network with a Huber loss, trained with every algorithm,
saved, loaded and used for prediction like the built-in models.

    mpiexec -n 2 python examples/custom_model.py [OUT_DIR]

The protocol is in ``mpitrain.models.base.Model``; ``mpitrain.testing.check_model`` checks it.
"""
import sys

import numpy as np

import mpitrain as mt
from mpitrain.testing import check_model


@mt.register_model
class TanhHuber(mt.Model):
    """y ~ tanh(x W1 + b1) w2 + b2 with the Huber loss (delta 1); theta = [W1, w2, b1, b2]."""

    name = "tanh-huber"
    metric_name = "mae"
    OPTIONS = ("hidden",)

    def __init__(self, n_features: int, hidden: int = 8) -> None:
        self.n_features, self.hidden = n_features, int(hidden)
        self.layout = mt.Layout(weights={"W1": (n_features, self.hidden), "w2": (self.hidden,)},
                                biases={"b1": (self.hidden,), "b2": ()})

    def init(self, seed: int) -> np.ndarray:
        theta = self.layout.zeros()
        p = self.layout.views(theta)
        rng = np.random.default_rng(seed)
        p["W1"][...] = rng.normal(0, 1 / np.sqrt(self.n_features), p["W1"].shape)
        p["w2"][...] = rng.normal(0, 1 / np.sqrt(self.hidden), p["w2"].shape)
        return theta

    def sums(self, theta, X, y, grad=None, ready=None):
        """(sum of Huber losses, sum of absolute errors); grad is OVERWRITTEN with the loss sum's gradient."""
        p = self.layout.views(theta)
        H = np.tanh(X @ p["W1"] + p["b1"])
        r = H @ p["w2"] + p["b2"] - y
        small = np.abs(r) <= 1.0
        loss = float(np.sum(np.where(small, 0.5 * r * r, np.abs(r) - 0.5)))
        if grad is not None:
            g = self.layout.views(grad)
            d = np.where(small, r, np.sign(r))                  # dloss/dprediction per row
            g["w2"][...] = H.T @ d                                # assignment, never +=
            g["b2"][...] = d.sum()
            dZ = np.outer(d, p["w2"]) * (1 - H * H)
            g["W1"][...] = X.T @ dZ
            g["b1"][...] = dZ.sum(axis=0)
            if ready is not None:
                ready(grad)                                      # the whole gradient is final now
        return loss, float(np.sum(np.abs(r)))

    def metric(self, metric_sum, n):
        return metric_sum / n if n else float("nan")

    def predict(self, theta, X):
        p = self.layout.views(theta)
        return np.tanh(X @ p["W1"] + p["b1"]) @ p["w2"] + p["b2"]

    def check_labels(self, y, start=0):
        bad = np.flatnonzero(~np.isfinite(y))
        return f"row {start + bad[0]} has label {y[bad[0]]}" if bad.size else None


def main(out: str) -> dict:
    comm = mt.world()
    data = mt.load("synthetic:regression,n=2000,d=6,noise=0.2,seed=1", comm)
    model = TanhHuber(data.n_features, hidden=8)
    check_model(model, data.X[:50], data.y[:50])                 # gradient, overwrite and ready rules
    maes = {}
    for loop in (mt.GD(), mt.SGD(batch_size=64), mt.LocalSGD(batch_size=64, sync_every=4), mt.OneShot(batch_size=64)):
        run = mt.train(model, data, comm, loop, steps=300, lr=0.05, optimizer="adam", out=f"{out}/{loop.name}")
        loaded, theta = mt.load_model(f"{out}/{loop.name}/model.npz")   # the registry knows "tanh-huber"
        predictions, mae = mt.predict(loaded, theta, data, comm)
        maes[loop.name] = mae
        if comm.rank == 0:
            assert np.array_equal(theta, run.result.theta) and predictions.shape == (data.n_total,)
            print(f"{loop.name:>9}: train MAE {mae:.4f} (objective {run.summary['final_train_loss']:.4f})")
    return maes


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/custom-model")
