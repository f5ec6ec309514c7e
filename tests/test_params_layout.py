"""params.Layout against offsets worked out by hand, and its views of many buffers."""
import numpy as np
import pytest

from mpitrain.params import Layout

WEIGHTS = {"W1": (3, 2), "scale": (), "empty": (0, 4)}
BIASES = {"b1": (2,), "b2": (1, 1)}


def test_offsets_sizes_and_the_penalised_prefix():
    layout = Layout(WEIGHTS, BIASES)
    # W1: 6 numbers, scale: 1, empty: 0, then b1: 2, b2: 1
    assert layout.offsets == {"W1": (0, 6), "scale": (6, 7), "empty": (7, 7), "b1": (7, 9), "b2": (9, 10)}
    assert (layout.size, layout.n_penalized) == (10, 7)
    assert layout.shapes["scale"] == () and layout.shapes["b2"] == (1, 1)


def test_views_read_and_write_the_right_slices():
    layout = Layout(WEIGHTS, BIASES)
    theta = np.arange(10.0)
    v = layout.views(theta)
    np.testing.assert_array_equal(v["W1"], np.arange(6.0).reshape(3, 2))
    assert v["scale"].shape == () and float(v["scale"]) == 6.0
    assert v["empty"].shape == (0, 4)
    np.testing.assert_array_equal(v["b1"], [7.0, 8.0])
    np.testing.assert_array_equal(v["b2"], [[9.0]])
    v["b1"][...] = -1.0
    np.testing.assert_array_equal(theta, [0, 1, 2, 3, 4, 5, 6, -1, -1, 9])


def test_views_of_many_buffers_in_turn_belong_to_their_own_buffer():
    layout = Layout({"w": (2,)}, {"b": ()})
    buffers = [np.full(3, float(i)) for i in range(7)]
    for _ in range(3):
        for i, buf in enumerate(buffers):
            v = layout.views(buf)
            assert np.shares_memory(v["w"], buf) and float(v["b"]) == float(i)


def test_record_has_no_weights():
    record = Layout.record({"grad": (4,), "loss": (), "vote": ()})
    assert record.offsets == {"grad": (0, 4), "loss": (4, 5), "vote": (5, 6)}
    assert (record.size, record.n_penalized) == (6, 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_buffers_have_the_layout_size_and_dtype(dtype):
    layout = Layout(WEIGHTS, BIASES)
    zeros, empty = layout.zeros(dtype), layout.empty(dtype)
    assert zeros.shape == empty.shape == (10,) and zeros.dtype == empty.dtype == np.dtype(dtype)
    assert not zeros.any()
    assert layout.zeros().dtype == np.float64


def test_a_buffer_of_the_wrong_length_is_refused():
    layout = Layout(WEIGHTS, BIASES)
    with pytest.raises(ValueError, match=r"has shape \(9,\); this layout needs \(10,\)"):
        layout.views(np.zeros(9))


def test_a_name_used_twice_is_refused():
    with pytest.raises(ValueError, match="b1 used for both a weight and a bias"):
        Layout({"b1": (2,)}, {"b1": (2,)})


def test_pack_places_each_array_by_name():
    layout = Layout(WEIGHTS, BIASES)
    arrays = {"W1": np.ones((3, 2)), "scale": 5.0, "empty": np.zeros((0, 4)), "b1": [2.0, 3.0], "b2": [[4.0]]}
    np.testing.assert_array_equal(layout.pack(arrays), [1, 1, 1, 1, 1, 1, 5, 2, 3, 4])
