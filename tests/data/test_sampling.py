"""People-batch sampling: who is picked, how many images, repeatability from the generator."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facetool.data.sampling import PeopleSampler


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 12), min_size=2, max_size=25),
    people=st.integers(2, 10),
    per_person=st.integers(2, 8),
    seed=st.integers(0, 2**32 - 1),
)
def test_rounds_follow_the_facenet_protocol(counts, people, per_person, seed):
    if sum(c >= 2 for c in counts) < 2:
        counts = [*counts, 2, 3]
    labels = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(seed).shuffle(labels)
    sampler = PeopleSampler(labels, people, per_person)
    indices = sampler.sample(np.random.default_rng(seed))
    assert len(np.unique(indices)) == len(indices)
    picked = labels[indices]
    ids, taken = np.unique(picked, return_counts=True)
    eligible = sum(c >= 2 for c in counts)
    assert len(ids) == min(people, eligible)
    for identity, n in zip(ids, taken, strict=True):
        assert counts[identity] >= 2
        assert n == min(counts[identity], per_person)
    boundaries = np.flatnonzero(np.diff(picked)) + 1
    assert len(boundaries) == len(ids) - 1, "images of one identity are contiguous"
    again = sampler.sample(np.random.default_rng(seed))
    assert np.array_equal(indices, again)


def test_rounds_differ_between_draws_and_cover_the_set():
    labels = np.repeat(np.arange(30), 5)
    sampler = PeopleSampler(labels, 6, 3)
    rng = np.random.default_rng(1)
    rounds = [sampler.sample(rng) for _ in range(40)]
    assert not np.array_equal(rounds[0], rounds[1])
    assert len(np.unique(labels[np.concatenate(rounds)])) == 30


def test_needs_two_identities_with_pairs():
    with pytest.raises(ValueError, match="two identities"):
        PeopleSampler(np.array([0, 0, 1, 2, 3]), 4, 4)
