"""Engine selection, the static input buffer of a CUDA graph, and the on-device skip of a non-finite step."""

from __future__ import annotations

import pytest
import torch

from facetool.config.train import EngineConfig, TrainConfig
from facetool.losses import TripletLoss
from facetool.models import build_backbone
from facetool.training.engine import OPTIMIZERS, Engine, embed_batch_for, engine_from_config, plan_engine
from facetool.training.graph import FAST_STEPS, StaticBatch

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(
    ("settings", "device", "optimizer", "world", "expected"),
    [
        ({}, CUDA, "adam", 1, ("cuda-graph", True, True)),
        ({}, CPU, "adam", 1, ("none", False, True)),
        ({}, CUDA, "adam", 2, ("none", True, True)),
        ({"compile": "cuda-graph"}, CPU, "adam", 1, ("none", False, True)),
        ({"compile": "reduce-overhead"}, CPU, "sgd", 1, ("none", False, True)),
        ({"compile": "reduce-overhead"}, CUDA, "sgd", 1, ("reduce-overhead", True, True)),
        ({"compile": "cuda-graph", "fused": False}, CUDA, "adam", 1, ("none", True, False)),
        ({"compile": "none", "channels_last": True}, CPU, "adamw", 1, ("none", True, True)),
        ({"channels_last": False, "fused": False}, CUDA, "adam", 1, ("none", False, False)),
    ],
)
def test_plan_engine_picks_fast_path_on_cuda_and_eager_on_cpu(settings, device, optimizer, world, expected):
    knobs = {key: settings[key] for key in ("channels_last", "fused") if key in settings}
    plan = plan_engine(
        EngineConfig(**{k: v for k, v in settings.items() if k not in knobs}),
        device,
        optimizer,
        world,
        **knobs,
    )
    assert (plan.compile, plan.channels_last, plan.fused) == expected
    asked = settings.get("compile", "auto")
    assert bool(plan.notes) == (asked != "auto" and asked != plan.compile)


def test_every_fast_mode_has_a_step():
    modes = set(EngineConfig.model_fields["compile"].annotation.__args__) - {"auto", "none"}
    assert modes == set(FAST_STEPS)


def test_static_batch_copies_in_place_and_keeps_its_layout():
    like = torch.zeros(6, 3, 8, 8)
    static = StaticBatch(like, channels_last=True)
    address = static.buffer.data_ptr()
    for seed in range(3):
        x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
        out = static.load(x)
        assert out.data_ptr() == address and torch.equal(out, x)
        assert out.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match=r"\(3, 3, 8, 8\) does not fit"):
        static.load(torch.zeros(3, 3, 8, 8))


def _engine(fused: bool, margin: float, guard: bool = True) -> Engine:
    torch.manual_seed(0)
    config = TrainConfig(learning_rate=0.01)
    model = build_backbone("test-cnn", embedding_dim=8, dropout=0.0, image_size=32)
    plan = plan_engine(EngineConfig(compile="none"), CPU, "adam", fused=fused)
    optimizer = OPTIMIZERS["adam"](model.parameters(), config, plan.fused)
    criterion = TripletLoss(num_classes=0, embedding_dim=8, margin=margin)
    return Engine(
        model, optimizer, CPU, torch.float32, 32, 64, plan=plan, guard_buffers=guard, criterion=criterion
    )


@pytest.mark.parametrize("fused", [True, False])
def test_non_finite_step_changes_nothing_and_finite_step_trains(fused):
    x = torch.randn(12, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    engine = _engine(fused, margin=float("inf"))
    before = {k: v.clone() for k, v in engine.model.state_dict().items()}
    loss, flag = engine.step(x)
    assert loss.item() == float("inf") and flag.item() == 1.0
    after = engine.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    engine.criterion.margin = 0.5
    loss, flag = engine.step(x)
    assert torch.isfinite(loss) and flag.item() == 0.0
    assert not torch.equal(before["head.weight"], engine.model.state_dict()["head.weight"])


@pytest.mark.parametrize(
    ("setting", "weights", "inputs"),
    [(None, torch.contiguous_format, torch.channels_last), (True, torch.channels_last, torch.channels_last),
     (False, torch.contiguous_format, torch.contiguous_format)],
)  # fmt: skip
def test_a_cpu_run_plans_its_layout_whatever_layout_its_batches_come_in(setting, weights, inputs):
    """Unset (auto) on a CPU: channels_last inputs (the fast CPU convolution) for NCHW batches too, weights as built."""
    torch.manual_seed(0)
    model = build_backbone("tiny-cnn-gdc", embedding_dim=8, dropout=0.0, image_size=32)
    plan = plan_engine(EngineConfig(), CPU, "adam", channels_last=setting)
    engine = Engine(model, OPTIMIZERS["adam"](model.parameters(), TrainConfig(), True), CPU, torch.float32, 32, 64,
                    plan=plan)  # fmt: skip
    seen = []
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    first.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(6, 3, 32, 32).contiguous(memory_format=layout)
        engine.step(x)
        engine.embed_inputs(x)
    assert first.weight.is_contiguous(memory_format=weights)
    assert len(seen) == 4 and all(x.is_contiguous(memory_format=inputs) for x in seen)


@pytest.mark.parametrize(
    ("size", "device", "expected"),
    [(64, "cpu", 128), (160, "cpu", 20), (32, "cpu", 256), (400, "cpu", 16), (160, "cuda", 256)],
)  # fmt: skip
def test_the_embedding_chunk_follows_the_input_size_on_a_cpu(size, device, expected):
    assert embed_batch_for(size, device) == expected


def test_a_cpu_engine_embeds_in_chunks_sized_for_its_input():
    config = TrainConfig(backbone="tiny-cnn", image_size=64, embedding_dim=8)
    engine, _ = engine_from_config(config, CPU, torch.float32)
    assert engine.embed_batch_size == 128
