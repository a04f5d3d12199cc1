"""People-batch sampling: who is picked, how many images, repeatability from the generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facetool.data.sampling import PeopleSampler, people_order
from facetool.miners import get_miner


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


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 6), min_size=4, max_size=30),
    people=st.integers(2, 6),
    extra=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
)
def test_extra_negatives_are_one_face_each_of_people_outside_the_round(counts, people, extra, seed):
    counts = [*counts, 2, 3]
    labels = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(seed).shuffle(labels)
    plain = PeopleSampler(labels, people, 4).sample(np.random.default_rng(seed))
    indices = PeopleSampler(labels, people, 4, extra_negatives=extra).sample(np.random.default_rng(seed))
    assert np.array_equal(indices[: len(plain)], plain), "the people of the round are drawn as before"
    extras = labels[indices[len(plain) :]]
    round_people = set(labels[plain].tolist())
    assert len(extras) == min(extra, len(counts) - len(round_people))
    assert len(set(extras.tolist())) == len(extras), "one face per person"
    assert not set(extras.tolist()) & round_people
    assert len(np.unique(indices)) == len(indices)


def test_single_image_people_serve_only_as_negatives_of_the_semihard_miner():
    counts = [1] * 40 + [5] * 12
    labels = np.repeat(np.arange(len(counts)), counts)
    sampler = PeopleSampler(labels, 6, 5, extra_negatives=30)
    rng = np.random.default_rng(3)
    singles_seen = set()
    for _ in range(20):
        indices = sampler.sample(rng)
        people = len(indices) - 30
        singles_seen |= {int(v) for v in labels[indices[people:]] if counts[v] == 1}
        emb = torch.nn.functional.normalize(
            torch.randn(len(indices), 8, generator=torch.Generator().manual_seed(1))
        )
        mined = get_miner("semihard")(emb, torch.as_tensor(labels[indices]), 0.5)
        assert mined.num_triplets > 0
        assert int(torch.cat([mined.anchors, mined.positives]).max()) < people
        assert (mined.negatives >= people).any(), "extra faces are picked as negatives"
    assert len(singles_seen) > 20, "people with a single image take part"


def runs_of(values: np.ndarray) -> list:
    """The values of `values` with consecutive repeats collapsed."""
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(1, 9), min_size=1, max_size=20), seed=st.integers(0, 2**32 - 1))
def test_people_order_keeps_each_persons_rows_together(counts, seed):
    labels = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(seed).shuffle(labels)
    order = people_order(labels, np.random.default_rng(seed))
    assert sorted(order.tolist()) == list(range(len(labels)))
    in_order = labels[order]
    assert len(runs_of(in_order)) == len(counts)
    again = people_order(labels, np.random.default_rng(seed))
    assert np.array_equal(order, again)


def test_people_order_shuffles_people_and_their_images():
    labels = np.repeat(np.arange(6), 5)
    orders = [people_order(labels, np.random.default_rng(seed)) for seed in range(40)]
    assert len({tuple(runs_of(labels[o])) for o in orders}) > 20
    firsts = {tuple(o[labels[o] == 0]) for o in orders}
    assert len(firsts) > 20
