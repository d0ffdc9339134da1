"""Candidate enumeration, pattern energy and library selection."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import (
    CENTRE_POSITION,
    KernelsError,
    candidate_count,
    enumerate_candidates,
    pattern_energy,
    select_library,
    validate_library,
)

FAST = settings(max_examples=40, deadline=None)


@pytest.mark.parametrize("entries", range(1, 10))
def test_candidate_counts_match_binomials(entries: int) -> None:
    fixed = enumerate_candidates(entries)
    free = enumerate_candidates(entries, centre_fixed=False)
    assert fixed.shape == (math.comb(8, entries - 1), 3, 3)
    assert free.shape == (math.comb(9, entries), 3, 3)
    assert candidate_count(entries) == fixed.shape[0]
    assert candidate_count(entries, centre_fixed=False) == free.shape[0]
    for candidates in (fixed, free):
        assert candidates.dtype == torch.bool
        flat = candidates.reshape(-1, 9)
        assert bool((flat.sum(dim=1) == entries).all())
        assert torch.unique(flat, dim=0).shape[0] == flat.shape[0]
    assert bool(fixed.reshape(-1, 9)[:, CENTRE_POSITION].all())


@pytest.mark.parametrize("entries", range(1, 10))
@pytest.mark.parametrize("centre_fixed", [True, False])
def test_candidate_order_is_itertools_combinations(entries: int, centre_fixed: bool) -> None:
    positions = [p for p in range(9) if p != CENTRE_POSITION] if centre_fixed else list(range(9))
    chosen = entries - 1 if centre_fixed else entries
    expected = []
    for combo in itertools.combinations(positions, chosen):
        row = np.zeros(9, dtype=bool)
        row[list(combo)] = True
        if centre_fixed:
            row[CENTRE_POSITION] = True
        expected.append(row)
    got = enumerate_candidates(entries, centre_fixed=centre_fixed).reshape(-1, 9).numpy()
    np.testing.assert_array_equal(got, np.stack(expected))


def test_candidates_are_row_major_and_fresh() -> None:
    first = enumerate_candidates(4)
    # (0, 1, 2) + centre: the whole top row and the centre.
    assert first[0].tolist() == [[True, True, True], [False, True, False], [False, False, False]]
    first[0] = False
    assert bool(enumerate_candidates(4)[0, 0, 0])  # the cache is not exposed to mutation


@pytest.mark.parametrize("entries", [0, 10, -1, 2.0, True, "4"])
def test_bad_entries_are_refused(entries: object) -> None:
    with pytest.raises(KernelsError, match="entries must be an int in \\[1, 9\\]"):
        enumerate_candidates(entries)  # type: ignore[arg-type]


@FAST
@given(
    batch=st.lists(st.integers(1, 5), min_size=0, max_size=3),
    entries=st.integers(1, 9),
    centre_fixed=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_pattern_energy_is_mass_inside_each_candidate(
    batch: list[int], entries: int, centre_fixed: bool, seed: int, dtype: torch.dtype
) -> None:
    generator = torch.Generator().manual_seed(seed)
    values = torch.rand((*batch, 3, 3), generator=generator, dtype=dtype)
    candidates = enumerate_candidates(entries, centre_fixed=centre_fixed)
    energy = pattern_energy(values, candidates)
    assert energy.shape == (*batch, candidates.shape[0])
    assert energy.dtype == dtype
    expected = (values.unsqueeze(-3) * candidates.to(dtype)).sum(dim=(-1, -2))
    torch.testing.assert_close(energy, expected)


def test_pattern_energy_refuses_negative_nan_and_inf() -> None:
    candidates = enumerate_candidates(4)
    for bad in (-1.0, math.nan, math.inf):
        values = torch.ones(2, 3, 3)
        values[1, 2, 2] = bad
        with pytest.raises(KernelsError, match="values must be non-negative and finite"):
            pattern_energy(values, candidates)


def test_pattern_energy_refuses_bad_shapes_and_dtypes() -> None:
    candidates = enumerate_candidates(4)
    with pytest.raises(KernelsError, match="values shape must be"):
        pattern_energy(torch.ones(2, 3, 4), candidates)
    with pytest.raises(KernelsError, match="floating-point"):
        pattern_energy(torch.ones(2, 3, 3, dtype=torch.int64), candidates)
    with pytest.raises(KernelsError, match="candidates must be a bool"):
        pattern_energy(torch.ones(2, 3, 3), candidates.float())
    with pytest.raises(KernelsError, match="candidates shape must be"):
        pattern_energy(torch.ones(2, 3, 3), candidates.reshape(-1, 9))


def test_select_library_breaks_ties_to_lower_index_and_sorts() -> None:
    counts = torch.tensor([3, 7, 7, 1, 7, 9, 0])
    # 9 at index 5, then the 7s at 1, 2, 4: a library of 3 takes 5, 1, 2.
    assert select_library(counts, 3).tolist() == [1, 2, 5]
    assert select_library(counts, 1).tolist() == [5]
    assert select_library(counts, 7).tolist() == list(range(7))
    assert select_library(np.array([0.5, 0.5, 0.5, 0.5]), 2).tolist() == [0, 1]
    assert select_library(counts, 3).dtype == torch.int64


@FAST
@given(
    counts=st.lists(st.integers(0, 4), min_size=1, max_size=60),
    data=st.data(),
)
def test_select_library_matches_a_reference_ranking(counts: list[int], data: st.DataObject) -> None:
    size = data.draw(st.integers(1, len(counts)))
    expected = sorted(sorted(range(len(counts)), key=lambda i: (-counts[i], i))[:size])
    got = select_library(torch.tensor(counts), size)
    assert got.tolist() == expected
    # Deterministic: the same input gives the same output, whatever the dtype.
    assert select_library(torch.tensor(counts, dtype=torch.float64), size).tolist() == expected


def test_select_library_refuses_bad_input() -> None:
    with pytest.raises(KernelsError, match="size must be an int in \\[1, 3\\]"):
        select_library(torch.ones(3), 4)
    with pytest.raises(KernelsError, match="size must be an int"):
        select_library(torch.ones(3), 0)
    with pytest.raises(KernelsError, match="counts shape must be"):
        select_library(torch.ones(2, 2), 1)
    with pytest.raises(KernelsError, match="NaN"):
        select_library(torch.tensor([1.0, math.nan]), 1)


def test_validate_library() -> None:
    candidates = enumerate_candidates(4)
    assert validate_library(candidates[:8]) == 4
    with pytest.raises(KernelsError, match="distinct"):
        validate_library(candidates[[0, 1, 0]])
    mixed = torch.cat([candidates[:2], enumerate_candidates(3)[:1]])
    with pytest.raises(KernelsError, match="same number of entries"):
        validate_library(mixed)
    with pytest.raises(KernelsError, match="at least 1 entry"):
        validate_library(torch.zeros(1, 3, 3, dtype=torch.bool))
    with pytest.raises(KernelsError, match="dtype must be torch.bool"):
        validate_library(candidates[:8].int())
    with pytest.raises(KernelsError, match="shape must be \\(P, 3, 3\\)"):
        validate_library(torch.zeros(0, 3, 3, dtype=torch.bool))
