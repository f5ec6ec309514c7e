"""The data sets scikit-learn ships, read from its files without importing it, row block by row block."""
import importlib.util

import numpy as np
import pytest

from mpitrain.data import BUILTIN, block_bounds, open_source
from mpitrain.errors import UsageError

sklearn_datasets = pytest.importorskip("sklearn.datasets")
LOADERS = {"digits": "load_digits", "breast_cancer": "load_breast_cancer", "wine": "load_wine", "iris": "load_iris"}


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("size", [1, 3, 4])
def test_blocks_concatenate_to_what_scikit_learn_loads(name, size):
    bunch = getattr(sklearn_datasets, LOADERS[name])()
    source = open_source(name)
    assert (source.n_total, source.n_features) == bunch.data.shape
    blocks = [source.read(*block_bounds(source.n_total, size, r)) for r in range(size)]
    np.testing.assert_array_equal(np.vstack([X for X, _ in blocks]), bunch.data)
    np.testing.assert_array_equal(np.concatenate([y for _, y in blocks]), bunch.target)


def test_an_empty_block_at_the_end_reads_as_no_rows():
    X, y = open_source("iris").read(150, 150)
    assert X.shape == (0, 4) and y.shape == (0,)


def test_without_scikit_learn_the_error_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    with pytest.raises(UsageError, match=r"scikit-learn is not installed.*pip install 'mpitrain\[datasets\]'"):
        open_source("digits")
