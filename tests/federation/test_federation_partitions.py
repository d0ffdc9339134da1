import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.partitions import PartitionError, PartitionSpec, client_indices, partition_indices, partition_report

LABELS = np.random.default_rng(123).integers(0, 10, size=3000)


def _check_exact_cover(parts, n):
    merged = np.concatenate(parts)
    assert merged.size == n, "every example must be in a partition"
    assert np.unique(merged).size == n, "no example may be in two partitions"


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "pathological"])
def test_disjoint_complete_deterministic(scheme):
    spec = PartitionSpec(scheme=scheme, num_partitions=7, alpha=0.5, classes_per_partition=4, seed=4)
    parts = partition_indices(LABELS, spec)
    assert len(parts) == 7
    _check_exact_cover(parts, LABELS.size)
    again = partition_indices(LABELS, spec)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = partition_indices(LABELS, PartitionSpec(scheme=scheme, num_partitions=7, alpha=0.5,
                                                    classes_per_partition=4, seed=5))
    _check_exact_cover(other, LABELS.size)
    if scheme != "pathological":  # deterministic class assignment; only the order inside classes is seeded
        assert not all(np.array_equal(a, b) for a, b in zip(parts, other))


@settings(max_examples=10, deadline=None)
@given(num=st.integers(1, 30), alpha=st.floats(0.05, 10.0), seed=st.integers(0, 10_000))
def test_dirichlet_always_exact_cover(num, alpha, seed):
    parts = partition_indices(LABELS, PartitionSpec(scheme="dirichlet", num_partitions=num, alpha=alpha, seed=seed))
    _check_exact_cover(parts, LABELS.size)


def _mean_label_skew(alpha):
    parts = partition_indices(LABELS, PartitionSpec(scheme="dirichlet", num_partitions=10, alpha=alpha, seed=0))
    hist = np.array(partition_report(LABELS, parts, 10)["label-histograms"], dtype=float)
    dist = hist / np.maximum(hist.sum(1, keepdims=True), 1)
    glob = np.bincount(LABELS, minlength=10) / LABELS.size
    return float(np.abs(dist - glob).sum(1).mean())  # mean L1 distance to the global label distribution


def test_dirichlet_skew_grows_as_alpha_shrinks():
    skews = [_mean_label_skew(a) for a in (100.0, 1.0, 0.1)]
    assert skews[0] < skews[1] < skews[2]


def test_pathological_classes_per_client():
    parts = partition_indices(LABELS, PartitionSpec(scheme="pathological", num_partitions=10, classes_per_partition=2))
    assert all(np.unique(LABELS[p]).size <= 2 for p in parts)


@settings(max_examples=10, deadline=None)
@given(num=st.integers(1, 12), per=st.integers(1, 10), seed=st.integers(0, 100))
def test_pathological_exact_cover_or_clear_error(num, per, seed):
    spec = PartitionSpec(scheme="pathological", num_partitions=num, classes_per_partition=per, seed=seed)
    if num + per - 1 < 10:
        with pytest.raises(PartitionError, match="every example has a partition"):
            partition_indices(LABELS, spec)
    else:
        _check_exact_cover(partition_indices(LABELS, spec), LABELS.size)


def test_errors():
    with pytest.raises(PartitionError, match="num-clients must be at most"):
        partition_indices(LABELS[:5], PartitionSpec(scheme="iid", num_partitions=6))
    with pytest.raises(PartitionError, match="classes-per-client must be at most"):
        partition_indices(LABELS, PartitionSpec(scheme="pathological", num_partitions=3, classes_per_partition=11))
    with pytest.raises(PartitionError, match="partition-id must be in"):
        client_indices(LABELS, PartitionSpec(scheme="iid", num_partitions=3), 3)


def test_cap_is_subset_and_deterministic():
    spec = PartitionSpec(scheme="iid", num_partitions=3)
    full = client_indices(LABELS, spec, 1)
    capped = client_indices(LABELS, spec, 1, cap=50, seed=2)
    assert capped.size == 50 and np.isin(capped, full).all()
    assert np.array_equal(capped, client_indices(LABELS, spec, 1, cap=50, seed=2))
