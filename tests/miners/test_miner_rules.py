"""Every built-in miner against a brute-force oracle of its rule, on random embeddings with and without ties."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facetool.miners import MiningResult, get_miner
from facetool.miners.base import squared_distances

MARGIN = 0.2
BUILT_INS = ["semihard", "semihard-strict", "hard", "random"]


def rule_semihard(d: list[list[float]], thr: list[list[float]], a: int, p: int, n: int) -> bool:
    return d[a][n] < thr[a][p]


def rule_strict(d: list[list[float]], thr: list[list[float]], a: int, p: int, n: int) -> bool:
    return d[a][p] < d[a][n] < thr[a][p]


def rule_any(d: list[list[float]], thr: list[list[float]], a: int, p: int, n: int) -> bool:
    return True


RULES = {"semihard": rule_semihard, "semihard-strict": rule_strict, "random": rule_any}


def oracle(
    name: str, emb: torch.Tensor, labels: torch.Tensor, margin: float
) -> dict[tuple[int, int], set[int]]:
    """Every anchor-positive pair (a < p, same label) and the set of negatives its rule allows.

    Distances are the miners' float32 ones; the threshold d(a,p) + margin is formed in float32 as the rule says.
    """
    dist = squared_distances(emb)
    d = dist.tolist()
    thr = (dist + margin).clamp_min(0.0).tolist()
    lab = labels.tolist()
    n_all = len(lab)
    out: dict[tuple[int, int], set[int]] = {}
    for a in range(n_all):
        others = [n for n in range(n_all) if lab[n] != lab[a]]
        hardest = min((d[a][n] for n in others), default=None)
        for p in range(a + 1, n_all):
            if lab[p] != lab[a]:
                continue
            if name == "hard":
                out[(a, p)] = {n for n in others if d[a][n] == hardest}
            else:
                out[(a, p)] = {n for n in others if RULES[name](d, thr, a, p, n)}
    return out


def make_batch(seed: int, ties: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = 48
    labels = torch.randint(0, 7, (n,), generator=g)
    labels[-1] = 99  # an identity with a single image: anchor of no pair, negative of all
    if ties:
        emb = torch.randint(0, 3, (n, 6), generator=g).float() / 2
        emb[5] = emb[9]
        emb[20] = emb[9]
    else:
        emb = torch.randn(n, 16, generator=g)
    return torch.nn.functional.normalize(emb, dim=1) if not ties else emb, labels


def check_against_oracle(name: str, result: MiningResult, allowed: dict[tuple[int, int], set[int]]) -> None:
    assert result.num_pairs == len(allowed)
    triplets = list(
        zip(result.anchors.tolist(), result.positives.tolist(), result.negatives.tolist(), strict=True)
    )
    seen = [(a, p) for a, p, _ in triplets]
    assert len(seen) == len(set(seen)), "a pair produced two triplets"
    for a, p, n in triplets:
        assert (a, p) in allowed, f"({a}, {p}) is not an anchor-positive pair"
        assert n in allowed[(a, p)], f"{name}: negative {n} breaks the rule for pair ({a}, {p})"
    expected = {pair for pair, negs in allowed.items() if negs}
    assert set(seen) == expected, (
        f"{name}: missed {len(expected - set(seen))} pairs that have a valid negative"
    )
    assert result.num_triplets == len(expected)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", BUILT_INS)
def test_miner_matches_oracle(name: str, seed: int, ties: bool) -> None:
    emb, labels = make_batch(seed, ties)
    margin = MARGIN if not ties else 0.5
    result = get_miner(name, generator=torch.Generator().manual_seed(seed))(emb, labels, margin)
    for t in (result.anchors, result.positives, result.negatives):
        assert t.dtype == torch.int64 and t.device == emb.device
    check_against_oracle(name, result, oracle(name, emb, labels, margin))


def test_semihard_sets_differ_between_rules() -> None:
    emb, labels = make_batch(3, ties=False)
    loose = oracle("semihard", emb, labels, MARGIN)
    strict = oracle("semihard-strict", emb, labels, MARGIN)
    assert all(strict[pair] <= loose[pair] for pair in loose)
    assert sum(map(len, strict.values())) < sum(map(len, loose.values()))


@pytest.mark.parametrize("name", ["semihard", "random"])
def test_negative_is_drawn_from_the_whole_valid_set(name: str) -> None:
    emb, labels = make_batch(4, ties=False)
    allowed = oracle(name, emb, labels, MARGIN)
    pair = max(allowed, key=lambda k: len(allowed[k]))
    assert len(allowed[pair]) >= 2
    miner = get_miner(name, generator=torch.Generator().manual_seed(0))
    drawn = set()
    for _ in range(25 * len(allowed[pair])):
        r = miner(emb, labels, MARGIN)
        hit = ((r.anchors == pair[0]) & (r.positives == pair[1])).nonzero()[:, 0]
        drawn.add(int(r.negatives[hit[0]]))
    assert drawn == allowed[pair]


@pytest.mark.parametrize("name", BUILT_INS)
def test_seeded_runs_are_reproducible(name: str) -> None:
    emb, labels = make_batch(5, ties=False)
    runs = [
        get_miner(name, generator=torch.Generator().manual_seed(7))(emb, labels, MARGIN) for _ in range(2)
    ]
    assert torch.equal(runs[0].negatives, runs[1].negatives)
    torch.manual_seed(11)
    first = get_miner(name)(emb, labels, MARGIN)
    torch.manual_seed(11)
    second = get_miner(name)(emb, labels, MARGIN)
    assert torch.equal(first.negatives, second.negatives)


@pytest.mark.parametrize("name", BUILT_INS)
def test_no_valid_triplet_gives_an_empty_result(name: str) -> None:
    emb = torch.nn.functional.normalize(torch.randn(10, 8), dim=1)
    one_identity = get_miner(name)(emb, torch.zeros(10, dtype=torch.long), MARGIN)
    singletons = get_miner(name)(emb, torch.arange(10), MARGIN)
    assert one_identity.num_triplets == 0 and one_identity.num_pairs == 45
    assert singletons.num_triplets == 0 and singletons.num_pairs == 0
    assert one_identity.anchors.dtype == torch.int64


@pytest.mark.parametrize("name", ["semihard", "semihard-strict"])
def test_well_separated_identities_have_no_semihard_negative(name: str) -> None:
    centres = torch.eye(4)
    emb = centres.repeat_interleave(5, dim=0) + 0.01 * torch.randn(
        20, 4, generator=torch.Generator().manual_seed(0)
    )
    labels = torch.arange(4).repeat_interleave(5)
    result = get_miner(name)(emb, labels, 0.1)
    assert result.num_triplets == 0 and result.num_pairs == 40


def test_mining_needs_no_gradients_and_accepts_half_precision() -> None:
    emb, labels = make_batch(6, ties=False)
    emb = emb.clone().requires_grad_(True)
    result = get_miner("semihard")(emb, labels, MARGIN)
    assert not result.negatives.requires_grad
    assert get_miner("hard")(emb.detach().bfloat16(), labels, MARGIN).num_triplets > 0


def test_bad_inputs_are_value_errors() -> None:
    miner = get_miner("semihard")
    with pytest.raises(ValueError, match="labels"):
        miner(torch.randn(4, 3), torch.zeros(5, dtype=torch.long), MARGIN)
    with pytest.raises(ValueError, match="embeddings"):
        miner(torch.randn(4), torch.zeros(4, dtype=torch.long), MARGIN)
    with pytest.raises(ValueError, match="labels"):
        miner(torch.randn(4, 3), torch.zeros(4), MARGIN)


ENGINES = {
    "rejection-first": {"REJECTION_ROUNDS": (8, 64, 4096)},
    "sort-only": {"REJECTION_ROUNDS": ()},
}


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("name", ["semihard", "semihard-strict"])
def test_each_sampling_stage_alone_matches_the_oracle(
    name: str, ties: bool, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two stages of facetool.miners.window (rejection, then sorting) are each exact on their own."""
    from facetool.miners import window

    for key, value in ENGINES[engine].items():
        monkeypatch.setattr(window, key, value)
    for seed in (7, 8):
        emb, labels = make_batch(seed, ties)
        margin = MARGIN if not ties else 0.5
        result = get_miner(name, generator=torch.Generator().manual_seed(seed))(emb, labels, margin)
        check_against_oracle(name, result, oracle(name, emb, labels, margin))


@pytest.mark.parametrize("name", ["semihard", "semihard-strict", "hard"])
def test_nan_embeddings_give_no_triplets(name: str) -> None:
    emb, labels = make_batch(9, ties=False)
    emb[3] = float("nan")
    result = get_miner(name)(emb, labels, MARGIN)
    roles = [result.anchors, result.negatives] + ([] if name == "hard" else [result.positives])
    assert result.num_triplets > 0 and not bool((torch.cat(roles) == 3).any())
    assert get_miner(name)(torch.full_like(emb, float("nan")), labels, MARGIN).num_triplets == 0


def test_distances_are_never_negative_zero() -> None:
    emb = torch.tensor([[0.6, 0.8], [0.6, 0.8], [1.0, 0.0]])
    dist = squared_distances(emb)
    assert bool((dist.view(torch.int32) >= 0).all())
    assert torch.allclose(dist, torch.cdist(emb, emb) ** 2, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(BUILT_INS),
    labels=st.lists(st.integers(0, 4), min_size=2, max_size=24),
    grid=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    margin=st.sampled_from([0.0, 0.1, 0.5, 2.0]),
)
def test_property_any_labels_and_coarse_embeddings(
    name: str, labels: list[int], grid: int, seed: int, margin: float
) -> None:
    """Arbitrary label layouts (unsorted, singletons, one identity) and embeddings on a coarse grid (many ties)."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.randint(0, grid + 1, (len(labels), 3), generator=g).float() / grid
    lab = torch.tensor(labels)
    result = get_miner(name, generator=g)(emb, lab, margin)
    check_against_oracle(name, result, oracle(name, emb, lab, margin))
