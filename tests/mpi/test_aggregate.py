"""More ways to aggregate (gradient accumulation, post-local SGD, SlowMo, the replicas' drift),
each against its defining identity or a serial NumPy reference, at any number of ranks.

Partitions are uneven (9 + 17 k rows on rank k, or 1003 rows in blocks) and every assertion is
on values every rank computes alike.
"""
import numpy as np
import pytest
from mpi4py import MPI

import mpitrain as mt
from mpitrain import optim
from mpitrain.algorithms import Hooks, State
from mpitrain.data import batch_shares
from helpers import linear_gradient

pytestmark = pytest.mark.mpi

D = 3


def same_bits_everywhere(theta: np.ndarray) -> bool:
    """True if every rank holds exactly these bytes (checked with mpi4py, not mpitrain)."""
    return len(set(MPI.COMM_WORLD.allgather(theta.tobytes()))) == 1


def uneven(comm):
    """This rank's block of a linear problem with 9 + 17 k rows on rank k; the counts, X and y."""
    counts = 9 + 17 * np.arange(comm.size, dtype=np.int64)
    rng = np.random.default_rng(77)
    X = rng.normal(size=(int(counts.sum()), D))
    y = X @ np.array([1.5, -2.0, 0.5]) + 0.3 + 0.2 * rng.normal(size=len(X)) + np.linspace(-1, 1, len(X))
    start = int(counts[: comm.rank].sum())
    stop = start + int(counts[comm.rank])
    return mt.Dataset(X[start:stop].copy(), y[start:stop].copy(), start, len(y), "uneven", counts), counts, X, y


def serial_slowmo(counts, X, y, theta0, steps, lr, sync_every, beta, alpha):
    """Full-batch local steps on every block, the n_k/N-weighted mean, then SlowMo's outer step.

    Returns the final theta and, per averaging, the weighted RMS of ||theta_k - mean|| and the
    largest ||theta_k - mean||.
    """
    edges = np.concatenate([[0], np.cumsum(counts)])
    parts = [(X[a:b], y[a:b]) for a, b in zip(edges[:-1], edges[1:])]
    w = counts / counts.sum()
    thetas = [theta0.copy() for _ in parts]
    x0, u, drifts = theta0.copy(), np.zeros_like(theta0), []
    for t in range(steps):
        thetas = [th - lr * linear_gradient(th, Xk, yk, 0.0) for th, (Xk, yk) in zip(thetas, parts)]
        if (t + 1) % sync_every == 0 or t + 1 == steps:
            mean = sum(wk * th for wk, th in zip(w, thetas))
            dist = np.array([np.linalg.norm(th - mean) for th in thetas])
            drifts.append((np.sqrt(w @ dist**2), dist.max()))
            u = beta * u + (x0 - mean) / lr
            x0 = x0 - alpha * lr * u
            thetas = [x0.copy() for _ in parts]
    return thetas[0], drifts


# -- gradient accumulation -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["logistic", "mlp"])
@pytest.mark.parametrize("accumulate", [2, 7])
def test_accumulation_equals_the_step_taken_at_once(comm, kind, accumulate):
    # 1003 rows: no rank count from 2 to 5 divides it, so the blocks and the shares are uneven.
    data = mt.load("synthetic:classification,n=1003,d=6,seed=3", comm)
    extra = {"hidden": (8,), "n_classes": 2} if kind == "mlp" else {}
    model = mt.create_model(kind, data.n_features, **extra)
    once = mt.fit(model, data, comm, mt.SGD(60), steps=25, lr=0.3, optimizer="adam", l2=0.01, seed=5)
    parts = mt.fit(model, data, comm, mt.SGD(60, accumulate=accumulate), steps=25, lr=0.3, optimizer="adam",
                   l2=0.01, seed=5)
    # Only the order of the additions differs: rounding, amplified a little by 25 Adam steps.
    np.testing.assert_allclose(parts.theta, once.theta, rtol=1e-10, atol=1e-12)
    assert same_bits_everywhere(parts.theta)


def test_accumulation_with_a_share_smaller_than_its_micro_batches_equals_the_step_taken_at_once(comm):
    """Rank 0 holds 2 rows, so its share of the batch is 1 row: one non-empty micro-batch of K = 3."""
    if comm.size < 2:
        pytest.skip("needs a rank whose share is smaller than another's: 2 ranks or more")
    counts = np.array([2] + [40] * (comm.size - 1))
    n, start, batch = int(counts.sum()), int(counts[: comm.rank].sum()), int(counts.sum()) // 2 + 1
    assert batch_shares(counts, batch)[0] == 1  # the premise
    rng = np.random.default_rng(7)
    X = rng.normal(size=(n, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + rng.normal(size=n)
    mine = slice(start, start + int(counts[comm.rank]))
    data = mt.Dataset(X[mine].copy(), y[mine].copy(), start, n, "a 2-row rank", counts)
    model = mt.create_model("linear", 3)
    once = mt.fit(model, data, comm, mt.SGD(batch), steps=12, lr=0.05, optimizer="momentum", l2=0.01, seed=3)
    parts = mt.fit(model, data, comm, mt.SGD(batch, accumulate=3), steps=12, lr=0.05, optimizer="momentum",
                   l2=0.01, seed=3)
    np.testing.assert_allclose(parts.theta, once.theta, rtol=1e-12, atol=1e-14)  # rounding only


def test_accumulation_refuses_what_cannot_apply():
    with pytest.raises(mt.OptionError, match="accumulate=9 splits a batch of 8"):
        mt.SGD(8, accumulate=9)
    with pytest.raises(mt.OptionError, match="overlap"):
        mt.Reduce(overlap=True).check(mt.SGD(8, accumulate=2))


# -- post-local SGD --------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_post_local_with_the_switch_after_the_last_step_is_sgd(comm, optimizer):
    data = mt.load("synthetic:classification,n=1003,d=6,seed=3", comm)
    model = mt.create_model("logistic", data.n_features)
    sgd = mt.fit(model, data, comm, mt.SGD(60), steps=20, lr=0.3, optimizer=optimizer, seed=2)
    post = mt.fit(model, data, comm, mt.PostLocalSGD(60, 4, switch_step=20), steps=20, lr=0.3,
                  optimizer=optimizer, seed=2)
    assert np.array_equal(post.theta, sgd.theta)
    assert np.array_equal(optim.flatten(post.opt_state), optim.flatten(sgd.opt_state))


def test_post_local_is_sgd_then_local_sgd_from_where_sgd_left(comm):
    data = mt.load("synthetic:classification,n=1003,d=6,seed=3", comm)
    model = mt.create_model("logistic", data.n_features)
    post = mt.fit(model, data, comm, mt.PostLocalSGD(60, 4, switch_step=9), steps=30, lr=0.3, seed=2)
    first = mt.fit(model, data, comm, mt.SGD(60), steps=9, lr=0.3, seed=2)
    rest = mt.fit(model, data, comm, mt.LocalSGD(60, 4), steps=30, lr=0.3, seed=2, state=State(9, first.theta))
    assert np.array_equal(post.theta, rest.theta)
    zero = mt.fit(model, data, comm, mt.PostLocalSGD(60, 4, switch_step=0), steps=30, lr=0.3, seed=2)
    local = mt.fit(model, data, comm, mt.LocalSGD(60, 4), steps=30, lr=0.3, seed=2)
    assert np.array_equal(zero.theta, local.theta)


class SaveEveryStep(Hooks):
    """Keeps a copy of every state the loop saves, and whether it said theta was synced."""

    def __init__(self) -> None:
        self.saved: list[tuple[State, bool]] = []

    def checkpoint_due(self, steps_done: int) -> bool:
        return True

    def save(self, state: State, synced: bool) -> None:
        flat = optim.flatten(state.opt_state).copy()
        self.saved.append((State(state.step, state.theta.copy(), state.period.copy(), flat), synced))


def same_saves(a: list[tuple[State, bool]], b: list[tuple[State, bool]]) -> bool:
    """Whether two lists of saved states match bit for bit, field by field."""
    return len(a) == len(b) and all(
        x.step == y.step and sx == sy and np.array_equal(x.theta, y.theta) and np.array_equal(x.period, y.period)
        and np.array_equal(x.opt_state, y.opt_state)
        for (x, sx), (y, sy) in zip(a, b))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_post_local_saves_and_logs_as_sgd_until_the_switch_then_as_local_sgd_resumed_there(comm, optimizer):
    """Local SGD resumed from SGD's own saved state at the switch (its unlogged totals included)
    must save, log and end exactly as post-local SGD does after the switch."""
    data = mt.load("synthetic:classification,n=1003,d=6,seed=3", comm)
    model = mt.create_model("logistic", data.n_features)
    kw = dict(steps=40, lr=0.3, seed=2, optimizer=optimizer)
    runs = {}
    for name, loop in (("post", mt.PostLocalSGD(60, 4, switch_step=20)), ("sgd", mt.SGD(60))):
        hooks, logs = SaveEveryStep(), []
        result = mt.fit(model, data, comm, loop, hooks=hooks, log=logs.append, **kw)
        runs[name] = result, hooks.saved, [{k: v for k, v in r.items() if k != "seconds"} for r in logs]
    at_switch, synced = runs["sgd"][1][19]
    assert at_switch.step == 20 and synced and at_switch.period[2] > 0  # the premise: totals not yet logged
    hooks, logs = SaveEveryStep(), []
    # SGD saves the totals of all ranks, local SGD each rank's own (summed at averaging): give rank 0 them all
    period = at_switch.period.copy() if comm.rank == 0 else np.zeros_like(at_switch.period)
    resume = State(20, at_switch.theta.copy(), period, at_switch.opt_state.copy())  # copies: fit updates them
    local = mt.fit(model, data, comm, mt.LocalSGD(60, 4), hooks=hooks, log=logs.append, state=resume, **kw)
    post, post_saves, post_logs = runs["post"]
    assert np.array_equal(post.theta, local.theta)
    assert same_saves(post_saves, runs["sgd"][1][:20] + hooks.saved)
    before = [r for r in runs["sgd"][2] if r["step"] <= 20]
    assert [r["step"] for r in post_logs] == [r["step"] for r in before] + [24, 28, 32, 36, 40]
    expected = before + [{k: v for k, v in r.items() if k != "seconds"} for r in logs]
    # the totals and the drift are summed in another order: the loss and drift may differ in their last bits
    for r in expected:
        r.update({k: pytest.approx(r[k], rel=1e-12) for k in ("loss", "drift_rms") if k in r})
    assert post_logs == expected


# -- SlowMo ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_slowmo_without_momentum_and_unit_slow_lr_is_local_sgd(comm, optimizer):
    data = mt.load("synthetic:classification,n=1003,d=6,seed=3", comm)
    model = mt.create_model("logistic", data.n_features)
    local = mt.fit(model, data, comm, mt.LocalSGD(60, 4), steps=30, lr=0.3, optimizer=optimizer)
    slow = mt.fit(model, data, comm, mt.SlowMo(60, 4, slow_momentum=0.0, slow_lr=1.0), steps=30, lr=0.3,
                  optimizer=optimizer)
    # theta = x0 - lr * ((x0 - mean) / lr): the mean to two roundings per averaging.
    np.testing.assert_allclose(slow.theta, local.theta, rtol=1e-13, atol=1e-14)


# The third case starts far from the optimum with long steps: each period moves the replicas
# much further from the last average than they drift apart, so the logged largest distance
# cannot be confused with the (squared) movement that travels in the same buffer.
@pytest.mark.parametrize("beta, alpha, lr, theta0", [(0.5, 1.0, 0.05, [0.2, -0.1, 0.4, 0.0]),
                                                     (0.7, 0.6, 0.05, [0.2, -0.1, 0.4, 0.0]),
                                                     (0.0, 1.0, 0.3, [6.0, 5.0, -7.0, 4.0])])
def test_slowmo_and_drift_follow_the_serial_reference(comm, beta, alpha, lr, theta0):
    data, counts, X, y = uneven(comm)
    model = mt.create_model("linear", D)
    theta0 = np.array(theta0)
    logs = []
    # batch = all rows: every rank's share is its whole block, so local steps are full-batch.
    result = mt.fit(model, data, comm, mt.SlowMo(int(counts.sum()), 3, slow_momentum=beta, slow_lr=alpha),
                    steps=13, lr=lr, theta=theta0, log=logs.append)
    expected, drifts = serial_slowmo(counts, X, y, theta0, 13, lr, 3, beta, alpha)
    np.testing.assert_allclose(result.theta, expected, rtol=1e-10, atol=1e-12)
    assert same_bits_everywhere(result.theta)
    if comm.rank == 0:
        assert len(logs) == len(drifts) == 5
        np.testing.assert_allclose([r["drift_rms"] for r in logs], [d[0] for d in drifts], rtol=1e-7, atol=1e-12)
        assert logs[0]["drift_max_prev"] is None
        np.testing.assert_allclose([r["drift_max_prev"] for r in logs[1:]], [d[1] for d in drifts[:-1]],
                                   rtol=1e-10, atol=1e-14)


def test_drift_past_max_drift_warns_or_stops(comm):
    data, counts, X, y = uneven(comm)
    model = mt.create_model("linear", D)
    _, drifts = serial_slowmo(counts, X, y, np.zeros(D + 1), 6, 0.05, 3, 0.0, 1.0)
    bound = 0.5 * drifts[0][0]  # the first averaging's spread is twice the bound
    loop = mt.LocalSGD(int(counts.sum()), 3, max_drift=bound, drift_action="stop")
    if comm.size == 1:  # one replica never drifts
        assert drifts[0][0] == 0
        return
    with pytest.raises(mt.JobError, match="drift_rms .* exceeds max_drift .* at step 3;"):
        mt.fit(model, data, comm, loop, steps=6, lr=0.05, theta=np.zeros(D + 1))
    warn = mt.LocalSGD(int(counts.sum()), 3, max_drift=bound)
    if comm.rank == 0:
        with pytest.warns(RuntimeWarning, match="exceeds max_drift .* at step 3;"):
            mt.fit(model, data, comm, warn, steps=6, lr=0.05, theta=np.zeros(D + 1))
    else:
        mt.fit(model, data, comm, warn, steps=6, lr=0.05, theta=np.zeros(D + 1))


# -- stopping and resuming -------------------------------------------------------------------------
SPREAD = ("seconds", "drift_max_prev", "drift_rms")  # timings, and spreads that start afresh on resuming


class StopAt(Hooks):
    """Votes to stop after ``step`` steps and keeps the snapshot, as a checkpoint file would."""

    listens = True

    def __init__(self, step: int) -> None:
        self.at, self.step, self.saved = step, 0, None

    def begin_step(self, step: int) -> None:
        self.step = step

    def stop_vote(self) -> float:
        return 1.0 if self.step + 1 == self.at else 0.0

    def save(self, state: State, synced: bool) -> None:
        self.saved = State(state.step, state.theta.copy(), state.period.copy(), optim.flatten(state.opt_state))


@pytest.mark.parametrize("loop", [mt.LocalSGD(60, 4), mt.SlowMo(60, 4, slow_momentum=0.6, slow_lr=0.9),
                                  mt.PostLocalSGD(60, 4, switch_step=7), mt.PostLocalSGD(60, 4, switch_step=9),
                                  mt.PostLocalSGD(60, 4, switch_step=10),
                                  mt.PostLocalSGD(60, 4, switch_step=13),
                                  mt.SGD(60, accumulate=3), mt.HierarchicalSGD(60, 2, sync_every_global=6),
                                  mt.Gossip(60, "exponential", consensus_every=4), mt.ZeRO1(60),
                                  mt.SGD(60, sampling="global", deterministic=True)],
                         ids=lambda loop: loop.name)
@pytest.mark.parametrize("stop", [10, 12])
def test_stopped_and_resumed_runs_end_bitwise_where_whole_runs_do(comm, loop, stop):
    data = mt.load("synthetic:classification,n=1003,d=6,seed=3", comm)
    model = mt.create_model("logistic", data.n_features)
    whole_logs, part_logs = [], []
    whole = mt.fit(model, data, comm, loop, steps=30, lr=0.2, optimizer="adam", log=whole_logs.append)
    hooks = StopAt(stop)
    first = mt.fit(model, data, comm, loop, steps=30, lr=0.2, optimizer="adam", hooks=hooks, log=part_logs.append)
    assert first.stopped and hooks.saved.step == stop
    rest = mt.fit(model, data, comm, loop, steps=30, lr=0.2, optimizer="adam", state=hooks.saved,
                  log=part_logs.append)
    assert np.array_equal(rest.theta, whole.theta)
    strip = [{k: v for k, v in r.items() if k not in SPREAD} for r in whole_logs]
    # post-local SGD resumed between the switch and the next averaging sums the synchronous steps'
    # totals in another order: the loss logged then may differ in its last bits
    loss = [{**r, "loss": pytest.approx(r["loss"], rel=1e-13)} for r in strip]
    assert [{k: v for k, v in r.items() if k not in SPREAD} for r in part_logs] == loss


def test_local_sgd_logs_zero_loss_at_an_exact_fit_after_every_averaging(comm):
    """y = X w + b exactly and theta = (w, b): every gradient is 0, so each period's logged loss is
    0 (up to rounding), the second and later too (the sums start afresh at each averaging)."""
    data, counts, X, _ = uneven(comm)
    w = np.array([1.5, -2.0, 0.5, 0.3])
    y = X @ w[:D] + w[D]
    exact = mt.Dataset(data.X, y[data.start:data.start + data.n_local].copy(), data.start, len(y), "exact", counts)
    logs = []
    mt.fit(mt.create_model("linear", D), exact, comm, mt.LocalSGD(len(y), 3), steps=12, lr=0.05, theta=w.copy(),
           log=logs.append)
    assert len(logs) >= 2 and max(abs(r["loss"]) for r in logs) < 1e-20


class StopOnRankZero(StopAt):
    """Only rank 0 votes, as when a signal reaches one rank: every rank must stop with it."""

    def __init__(self, step: int, rank: int) -> None:
        super().__init__(step)
        self.rank = rank

    def stop_vote(self) -> float:
        return super().stop_vote() if self.rank == 0 else 0.0


@pytest.mark.parametrize("loop", [mt.LocalSGD(60, 4), mt.Gossip(60, "ring", consensus_every=4)], ids=lambda l: l.name)
@pytest.mark.parametrize("stop", [6, 8])  # every 4: between averagings (or consensus steps), and at one
def test_one_ranks_stop_vote_stops_every_rank_of_local_sgd(comm, loop, stop):
    data = mt.load("synthetic:classification,n=1003,d=6,seed=3", comm)
    model = mt.create_model("logistic", data.n_features)
    hooks = StopOnRankZero(stop, comm.rank)
    result = mt.fit(model, data, comm, loop, steps=30, lr=0.2, hooks=hooks)
    assert result.stopped and hooks.saved.step == stop


def test_one_ranks_stop_vote_stops_every_rank_of_zero1(comm):
    data = mt.load("synthetic:classification,n=1003,d=6,seed=3", comm)
    hooks = StopOnRankZero(7, comm.rank)
    result = mt.fit(mt.create_model("logistic", data.n_features), data, comm, mt.ZeRO1(60), steps=30, lr=0.2,
                    optimizer="adam", hooks=hooks)
    assert result.stopped and hooks.saved.step == 7


# -- hierarchical local SGD ------------------------------------------------------------------------
def node_of_every_rank() -> np.ndarray:
    """The lowest world rank on each rank's node, shape (size,), found with mpi4py alone."""
    node = MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED)
    lowest = min(node.allgather(MPI.COMM_WORLD.Get_rank()))
    node.Free()
    return np.array(MPI.COMM_WORLD.allgather(lowest))


def serial_hierarchical(counts, nodes, X, y, theta0, steps, lr, every, every_global, upto=None, momentum=0.0,
                        state="keep", adam=False):
    """Full-batch local steps on every block: heavy-ball momentum (t = momentum t + g, theta -= lr t) or,
    with ``adam``, Adam (0.9, 0.999, 1e-8, bias-corrected by each block's own step count); n_k/N_node
    means inside nodes, n_k/N means over all; the optimizer's moments kept, averaged with the same
    weights, or reset to 0 (the count too) at each average. A node without rows skips its node
    averages. Every block's theta after ``upto`` steps (default: all ``steps``), a list."""
    edges = np.concatenate([[0], np.cumsum(counts)])
    parts = [(X[a:b], y[a:b]) for a, b in zip(edges[:-1], edges[1:])]
    thetas = [theta0.copy() for _ in parts]
    first, second = [np.zeros_like(theta0) for _ in parts], [np.zeros_like(theta0) for _ in parts]
    taken = [0 for _ in parts]

    def average(members):
        weights = counts[members] / counts[members].sum()
        for values in (thetas, first, second) if state == "average" else (thetas,):
            mean = sum(w * values[k] for w, k in zip(weights, members))
            for k in members:
                values[k] = mean.copy()
        if state == "reset":
            for k in members:
                first[k], second[k], taken[k] = np.zeros_like(theta0), np.zeros_like(theta0), 0

    for t in range(steps if upto is None else upto):
        for k, (Xk, yk) in enumerate(parts):
            if len(yk):
                g = linear_gradient(thetas[k], Xk, yk, 0.0)
                if adam:
                    taken[k] += 1
                    first[k] = 0.9 * first[k] + (1 - 0.9) * g
                    second[k] = 0.999 * second[k] + (1 - 0.999) * (g * g)
                    mean, square = first[k] / (1 - 0.9 ** taken[k]), second[k] / (1 - 0.999 ** taken[k])
                    direction = mean / (np.sqrt(square) + 1e-8)
                else:
                    first[k] = momentum * first[k] + g
                    direction = first[k]
                thetas[k] = thetas[k] - lr * direction
        if (t + 1) % every_global == 0 or t + 1 == steps:
            average(np.arange(len(parts)))
        elif (t + 1) % every == 0:
            for node in set(nodes):
                members = np.flatnonzero(nodes == node)
                if counts[members].sum():
                    average(members)
    return thetas


def test_hierarchical_follows_the_serial_reference_on_the_nodes_mpi_reports(comm):
    # Run with MPIR_CVAR_NUM_CLIQUES=2 (the Makefile does, at 4 ranks) for two fake nodes.
    data, counts, X, y = uneven(comm)
    model = mt.create_model("linear", D)
    theta0 = np.array([0.2, -0.1, 0.4, 0.0])
    loop = mt.HierarchicalSGD(int(counts.sum()), 2, sync_every_global=6)
    result = mt.fit(model, data, comm, loop, steps=17, lr=0.05, theta=theta0)
    expected = serial_hierarchical(counts, node_of_every_rank(), X, y, theta0, 17, 0.05, 2, 6)[0]
    np.testing.assert_allclose(result.theta, expected, rtol=1e-10, atol=1e-12)
    assert same_bits_everywhere(result.theta)


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
@pytest.mark.parametrize("local_state", ["keep", "average", "reset"])
@pytest.mark.parametrize("empty_node", [False, True], ids=["rows-everywhere", "a-node-without-rows"])
def test_hierarchical_follows_the_serial_reference_mid_run_and_at_the_end(comm, optimizer, local_state, empty_node):
    """Each rank's model after a stop at step 9 (a node average, not a global one), and the common
    model at the end, against the serial reference, with momentum or Adam's moments kept, averaged or reset.
    Run with MPIR_CVAR_NUM_CLIQUES=2 for two fake nodes (one node: node averages are global)."""
    nodes = node_of_every_rank()
    counts = 9 + 17 * np.arange(comm.size, dtype=np.int64)
    if empty_node:
        if len(set(nodes)) < 2:
            pytest.skip("needs two nodes or more (MPIR_CVAR_NUM_CLIQUES=2)")
        counts[nodes == nodes[-1]] = 0  # the last rank's node holds no rows
    rng = np.random.default_rng(78)
    X = rng.normal(size=(int(counts.sum()), D))
    y = X @ np.array([1.5, -2.0, 0.5]) + 0.3 + 0.2 * rng.normal(size=len(X))
    start = int(counts[: comm.rank].sum())
    stop = start + int(counts[comm.rank])
    data = mt.Dataset(X[start:stop].copy(), y[start:stop].copy(), start, len(y), "nodes", counts)
    model, theta0 = mt.create_model("linear", D), np.array([0.2, -0.1, 0.4, 0.0])
    loop = mt.HierarchicalSGD(int(counts.sum()), 3, sync_every_global=6, local_state=local_state)
    rule = optim.create("momentum", momentum=0.5) if optimizer == "momentum" else optim.create("adam")
    kw = dict(steps=17, lr=0.05, optimizer=rule)
    reference = dict(momentum=0.5, state=local_state, adam=optimizer == "adam")
    hooks = StopAt(9)
    stopped = mt.fit(model, data, comm, loop, theta=theta0.copy(), hooks=hooks, **kw)
    assert stopped.stopped and hooks.saved.step == 9
    mid = serial_hierarchical(counts, nodes, X, y, theta0, 17, 0.05, 3, 6, upto=9, **reference)
    np.testing.assert_allclose(stopped.theta, mid[comm.rank], rtol=1e-10, atol=1e-12)
    whole = mt.fit(model, data, comm, loop, theta=theta0.copy(), **kw)
    end = serial_hierarchical(counts, nodes, X, y, theta0, 17, 0.05, 3, 6, **reference)[0]
    np.testing.assert_allclose(whole.theta, end, rtol=1e-10, atol=1e-12)
    assert same_bits_everywhere(whole.theta)


@pytest.mark.parametrize("optimizer, local_state", [("momentum", "keep"), ("adam", "average")])
def test_hierarchical_on_one_node_is_local_sgd(comm, optimizer, local_state):
    if len(set(node_of_every_rank())) != 1:
        pytest.skip("the ranks span more than one node")
    data = mt.load("synthetic:classification,n=1003,d=6,seed=3", comm)
    model = mt.create_model("logistic", data.n_features)
    ordered = mt.Reduce("ordered")  # rank-ordered sums: the bits do not depend on the buffer's length
    kw = dict(steps=25, lr=0.3, optimizer=optimizer, reduce=ordered)
    local = mt.fit(model, data, comm, mt.LocalSGD(60, 3, local_state=local_state), **kw)
    two = mt.fit(model, data, comm, mt.HierarchicalSGD(60, 3, sync_every_global=9, local_state=local_state), **kw)
    assert np.array_equal(two.theta, local.theta)
    assert np.array_equal(optim.flatten(two.opt_state), optim.flatten(local.opt_state))


# -- gossip ----------------------------------------------------------------------------------------
def serial_gossip(counts, X, y, theta0, steps, lr, graph, replicas=None, losses=None):
    """Full-batch local steps on every block, then each rank's mean with its graph neighbours;
    the uniform mean of all ranks at the last step. ``replicas`` (a list) receives every rank's
    parameters at the end of each step (at the last, before the mean); ``losses`` each step's sum
    over all rows of (a theta - y)^2 / 2, at the parameters the step starts from."""
    p = len(counts)
    edges = np.concatenate([[0], np.cumsum(counts)])
    parts = [(X[a:b], y[a:b]) for a, b in zip(edges[:-1], edges[1:])]
    thetas = [theta0.copy() for _ in parts]
    for t in range(steps):
        if losses is not None:
            losses.append(sum(0.5 * np.sum((Xk @ th[:-1] + th[-1] - yk) ** 2) for th, (Xk, yk) in zip(thetas, parts)))
        thetas = [th if len(yk) == 0 else th - lr * linear_gradient(th, Xk, yk, 0.0)
                  for th, (Xk, yk) in zip(thetas, parts)]
        if t + 1 == steps:
            if replicas is not None:
                replicas.append(np.array(thetas))
            return sum(thetas) / p
        if p == 1:
            replicas is None or replicas.append(np.array(thetas))
            continue
        if graph == "ring":
            near = [{(k - 1) % p, (k + 1) % p} for k in range(p)]
        else:  # one peer, 2^(t mod ceil(log2 p)) ranks back
            hop = 2 ** (t % int(np.ceil(np.log2(p))))
            near = [{(k - hop) % p} for k in range(p)]
        thetas = [(thetas[k] + sum(thetas[j] for j in near[k])) / (len(near[k]) + 1) for k in range(p)]
        if replicas is not None:
            replicas.append(np.array(thetas))


@pytest.mark.parametrize("graph", ["ring", "exponential"])
def test_gossip_follows_the_serial_reference(comm, graph):
    data, counts, X, y = uneven(comm)
    model = mt.create_model("linear", D)
    theta0 = np.array([0.2, -0.1, 0.4, 0.0])
    logs = []
    result = mt.fit(model, data, comm, mt.Gossip(int(counts.sum()), graph, consensus_every=4), steps=13, lr=0.05,
                    theta=theta0, log=logs.append)
    np.testing.assert_allclose(result.theta, serial_gossip(counts, X, y, theta0, 13, 0.05, graph),
                               rtol=1e-10, atol=1e-12)
    assert same_bits_everywhere(result.theta)
    if comm.rank == 0:
        assert [r["step"] for r in logs] == [4, 8, 12, 13]


@pytest.mark.parametrize("graph", ["ring", "exponential"])
def test_gossip_logs_the_exact_consensus_distance_of_the_serial_replicas(comm, graph):
    """Every consensus_every steps: drift_rms is the root mean square over ranks of ||theta_k - mean||
    (uniform mean) of the serial replicas at that step, and drift_max_prev the largest distance at
    the log before; the last step logs the distance before the exact average."""
    data, counts, X, y = uneven(comm)
    theta0 = np.array([0.2, -0.1, 0.4, 0.0])
    logs, replicas, losses = [], [], []
    mt.fit(mt.create_model("linear", D), data, comm, mt.Gossip(int(counts.sum()), graph, consensus_every=3),
           steps=13, lr=0.05, theta=theta0, log=logs.append)
    serial_gossip(counts, X, y, theta0, 13, 0.05, graph, replicas, losses)
    distances = [np.linalg.norm(r - r.mean(axis=0), axis=1) for r in replicas]  # per step, per rank
    if comm.rank == 0:
        assert [r["step"] for r in logs] == [3, 6, 9, 12, 13]
        # the loss logged: the mean over the period's steps and all rows, each rank at its own replica
        periods = [range(0, 3), range(3, 6), range(6, 9), range(9, 12), range(12, 13)]
        means = [sum(losses[t] for t in ts) / (len(ts) * counts.sum()) for ts in periods]
        np.testing.assert_allclose([r["loss"] for r in logs], means, rtol=1e-10)
        expected = [np.sqrt(np.mean(distances[s - 1] ** 2)) for s in (3, 6, 9, 12, 13)]
        scale = max(np.abs(r).max() for r in replicas)
        np.testing.assert_allclose([r["drift_rms"] for r in logs], expected, rtol=1e-6, atol=1e-7 * scale)
        if comm.size > (3 if graph == "ring" else 2):  # else a mix is the mean and no replicas differ
            assert min(expected[:4]) > 1e-4
        np.testing.assert_allclose([r["drift_max_prev"] for r in logs[1:]],
                                   [distances[s - 1].max() for s in (3, 6, 9, 12)], rtol=1e-9, atol=1e-14)


class DueAt(Hooks):
    """Checkpoints due after the steps in ``due``; records what is saved and evaluated."""

    def __init__(self, due) -> None:
        self.due, self.saved, self.evaluated = set(due), [], []

    def checkpoint_due(self, steps_done: int) -> bool:
        return steps_done in self.due

    def save(self, state: State, synced: bool) -> None:
        self.saved.append((state.step, synced))

    def evaluate(self, steps_done: int, theta: np.ndarray) -> bool:
        self.evaluated.append(steps_done)
        return False


@pytest.mark.parametrize("graph", ["ring", "exponential"])
def test_gossip_models_differ_at_consensus_steps_so_no_checkpoint_or_validation_is_taken_there(comm, graph):
    """The consensus reduction measures the replicas' mean but leaves each rank its model: only the
    exact average of the last step is one model to checkpoint and validate."""
    data = mt.load("synthetic:classification,n=1003,d=6,seed=3", comm)
    hooks = DueAt({4, 8, 12})
    mt.fit(mt.create_model("logistic", data.n_features), data, comm, mt.Gossip(60, graph, consensus_every=4),
           steps=12, lr=0.2, hooks=hooks)
    assert hooks.saved == [(12, True)] and hooks.evaluated == [12]


def test_gossip_on_the_complete_graph_is_averaging(comm):
    # 1200 rows and a batch of 60: equal blocks and shares at 1 to 5 ranks, so n_k/N = 1/p.
    data = mt.load("synthetic:classification,n=1200,d=5,seed=1", comm)
    model = mt.create_model("logistic", data.n_features)
    local_logs, logs = [], []
    local = mt.fit(model, data, comm, mt.LocalSGD(60, 1), steps=20, lr=0.3, optimizer="momentum",
                   log=local_logs.append)
    gossip = mt.fit(model, data, comm, mt.Gossip(60, "complete", consensus_every=5), steps=20, lr=0.3,
                    optimizer="momentum", log=logs.append)
    # sum_k theta_k / p in rank order against sum_k (n_k/N) theta_k by the allreduce: rounding only
    np.testing.assert_allclose(gossip.theta, local.theta, rtol=1e-12, atol=1e-14)
    if comm.rank == 0:  # after each mix every rank holds the mean: no distance, to the identity's rounding
        assert [r["step"] for r in logs] == [5, 10, 15, 20]
        assert all(r["drift_rms"] < 1e-6 for r in logs[:-1])
        np.testing.assert_allclose(logs[-1]["drift_rms"], local_logs[-1]["drift_rms"], rtol=1e-6, atol=1e-12)


# -- ZeRO-1 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["logistic", "mlp"])
@pytest.mark.parametrize("optimizer, l2", [("sgd", 0.01), ("sgd", 0.0), ("momentum", 0.01), ("adam", 0.01)])
def test_zero1_equals_sgd_with_the_ring_bitwise_and_keeps_a_pth_of_the_state(comm, kind, optimizer, l2):
    """Plain sgd without l2 takes zero-1's fused step; every other case its optimizer's update."""
    data = mt.load("synthetic:classification,n=1003,d=6,seed=3", comm)
    extra = {"hidden": (8,), "n_classes": 2} if kind == "mlp" else {}
    model = mt.create_model(kind, data.n_features, **extra)
    sgd_logs, zero_logs = [], []
    sgd = mt.fit(model, data, comm, mt.SGD(60), steps=25, lr=0.1, optimizer=optimizer, l2=l2,
                 reduce=mt.Reduce("ring"), log=sgd_logs.append)
    zero = mt.fit(model, data, comm, mt.ZeRO1(60), steps=25, lr=0.1, optimizer=optimizer, l2=l2,
                  log=zero_logs.append)
    assert np.array_equal(zero.theta, sgd.theta)
    for name in ("loss", "metric"):  # the logged loss and accuracy are sgd's too
        np.testing.assert_allclose([r[name] for r in zero_logs], [r[name] for r in sgd_logs], rtol=1e-12)
    assert same_bits_everywhere(zero.theta)
    # This rank's block of the n + 3 step numbers: ceil or floor of (n + 3) / p, less the 3 scalars at most.
    whole = optim.flatten(sgd.opt_state, counts=False).size
    mine = optim.flatten(zero.opt_state, counts=False).size
    per_param = whole // model.n_params  # 0 (sgd), 1 (momentum) or 2 (adam) arrays
    assert mine <= per_param * -(-(model.n_params + 3) // comm.size)
    assert MPI.COMM_WORLD.allreduce(mine) == whole


def test_zero1_refuses_optimizers_that_do_not_act_per_parameter(comm):
    data = mt.load("synthetic:classification,n=1003,d=6,seed=3", comm)
    model = mt.create_model("logistic", data.n_features)
    for rule in (optim.create("adam", clip_norm=1.0), optim.create("adamw", weight_decay=0.1, n_decayed=6)):
        if comm.size == 1:  # one block is all the parameters: nothing to refuse
            mt.fit(model, data, comm, mt.ZeRO1(60), steps=2, lr=0.1, optimizer=rule)
            continue
        with pytest.raises(mt.JobError, match="must act on each parameter alone"):
            mt.fit(model, data, comm, mt.ZeRO1(60), steps=2, lr=0.1, optimizer=rule)


# -- world-size-invariant sampling -----------------------------------------------------------------
SPEC = "synthetic:classification,n=1003,d=6,seed=3"


def model_of(kind):
    extra = {"mlp": {"hidden": (8,), "n_classes": 3}, "softmax": {"n_classes": 3}}.get(kind, {})
    return mt.create_model(kind, 6, **extra)


@pytest.mark.parametrize("loop", [mt.GD(deterministic=True), mt.SGD(60, sampling="global", deterministic=True)],
                         ids=["gd", "sgd"])
@pytest.mark.parametrize("kind, optimizer", [("linear", "adam"), ("logistic", "sgd"), ("logistic", "momentum"),
                                             ("logistic", "nesterov"), ("logistic", "adamw"), ("softmax", "adam"),
                                             ("mlp", "adam")])
def test_deterministic_parameters_are_bitwise_those_of_one_rank(comm, loop, kind, optimizer):
    spec = SPEC if kind != "linear" else SPEC.replace("classification", "regression")
    if kind in ("softmax", "mlp"):
        spec = spec.replace("classification", "classification,classes=3")
    data = mt.load(spec, comm)
    options = {"steps": 8, "lr": 0.05, "optimizer": optimizer, "l2": 0.01, "seed": 4}
    result = mt.fit(model_of(kind), data, comm, loop, **options)
    solo = mt.Comm(MPI.COMM_SELF)
    reference = mt.fit(model_of(kind), mt.load(spec, solo), solo, loop, **options)
    assert result.steps == reference.steps == 8  # both ran every step: neither stopped early
    assert np.array_equal(result.theta, reference.theta)


def test_global_sampling_takes_the_same_rows_at_any_rank_count(comm):
    from mpitrain.algorithms.sync import GlobalBatches
    from mpitrain.data.sampler import epoch_order

    data = mt.load(SPEC, comm)
    batches = GlobalBatches(data, 97, seed=5)
    n = data.n_total
    for step in (0, 3, 10, 11):  # 97 * 11 > 1003: step 10 crosses into the second epoch
        mine = np.sort(batches.rows(step) + data.start)
        everyone = np.sort(np.concatenate(MPI.COMM_WORLD.allgather(mine)))
        stream = np.concatenate([epoch_order(5, 0, 0, n), epoch_order(5, 1, 0, n)])
        assert np.array_equal(everyone, np.sort(stream[97 * step : 97 * (step + 1)]))
    data = mt.load(SPEC, comm)
    model = model_of("logistic")
    options = {"steps": 20, "lr": 0.1, "optimizer": "adam", "seed": 5}
    result = mt.fit(model, data, comm, mt.SGD(97, sampling="global"), **options)
    solo = mt.Comm(MPI.COMM_SELF)
    reference = mt.fit(model, mt.load(SPEC, solo), solo, mt.SGD(97, sampling="global"), **options)
    np.testing.assert_allclose(result.theta, reference.theta, rtol=1e-12, atol=1e-14)  # rounding of the allreduce


def test_local_sgd_stops_with_a_message_when_the_models_diverge(comm):
    """lr 1e300 overflows the models within the first period: the first averaging names it."""
    data, counts, X, y = uneven(comm)
    model = mt.create_model("linear", D)
    overflow = np.errstate(over="ignore", invalid="ignore")
    with pytest.raises(mt.JobError, match="became (infinite|nan) at step 3;"), overflow:
        mt.fit(model, data, comm, mt.LocalSGD(int(counts.sum()), 3), steps=6, lr=1e300, theta=np.zeros(D + 1))


def test_local_sgd_drift_of_replicas_that_take_the_same_steps_is_zero_not_nan(comm):
    """Every rank holds the same rows, so the replicas never part: the drift is 0 up to rounding,
    and rounding below zero must not turn its square root into NaN."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(30, D))
    y = X @ np.array([1.0, -1.0, 2.0]) + rng.normal(size=30)
    counts = np.full(comm.size, 30)
    data = mt.Dataset(X.copy(), y.copy(), 30 * comm.rank, 30 * comm.size, "copies", counts)
    logs = []
    mt.fit(mt.create_model("linear", D), data, comm, mt.LocalSGD(30 * comm.size, 2), steps=40, lr=0.1,
           theta=np.full(D + 1, 3.0), log=logs.append)
    if comm.rank == 0:
        drift = np.array([r["drift_rms"] for r in logs])
        assert len(drift) == 20 and np.isfinite(drift).all() and drift.max() < 1e-6, drift


@pytest.mark.parametrize("kind, d", [("linear", 1), ("linear", 2), ("linear", 4), ("softmax", 1)])
def test_zero1_leaves_the_intercept_unpenalised_on_a_rank_whose_block_holds_nothing_else(comm, kind, d):
    """The parameters and 3 scalars split into blocks; with 4 features at 2 ranks, or 2 at 3, one
    rank's parameters are the intercept alone; softmax on 1 feature and 4 classes puts two of its
    four intercepts alone on rank 1 of 2. There l2 must add nothing: zero-1 equals sgd bit for
    bit with a strong l2."""
    if kind == "linear":
        data, model = mt.load(f"synthetic:regression,n=301,d={d},seed=2", comm), mt.create_model("linear", d)
    else:
        data = mt.load("synthetic:classification,n=301,d=1,classes=4,seed=2", comm)
        model = mt.create_model("softmax", 1, n_classes=4)
    options = dict(steps=20, lr=0.1, optimizer="momentum", l2=0.5)
    sgd = mt.fit(model, data, comm, mt.SGD(50), reduce=mt.Reduce("ring"), **options)
    zero = mt.fit(model, data, comm, mt.ZeRO1(50), **options)
    assert np.array_equal(zero.theta, sgd.theta)
