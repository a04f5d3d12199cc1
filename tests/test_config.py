"""Config loading: TOML files, overrides, and errors that name the file and the key."""

from pathlib import Path

import pytest
from pydantic import Field

from facetool.config.base import (
    StrictModel,
    build_config,
    dump_toml,
    field_help,
    load_config,
    parse_override,
    read_toml,
)
from facetool.errors import ConfigError


class Inner(StrictModel):
    flip: bool = True
    strength: float = Field(0.1, ge=0, le=1)


class Example(StrictModel):
    batch_size: int = Field(90, gt=0)
    name: str = "semihard"
    inner: Inner = Inner()


def test_defaults_without_file():
    assert load_config(Example) == Example()


def test_file_then_overrides_win(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text('batch_size = 30\nname = "hard"\n[inner]\nstrength = 0.5\n')
    config = load_config(Example, path, [("batch_size", 60), ("inner.flip", False)])
    assert (config.batch_size, config.name, config.inner.strength, config.inner.flip) == (
        60,
        "hard",
        0.5,
        False,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("batch-size=12", ("batch_size", 12)),
        ("lr = 0.5", ("lr", 0.5)),
        ("name=hard", ("name", "hard")),
        ('name="a b"', ("name", "a b")),
        ("flag=true", ("flag", True)),
        ("sizes=[1, 2]", ("sizes", [1, 2])),
    ],
)
def test_parse_override(text, expected):
    assert parse_override(text) == expected


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("batch_size")


def test_unknown_key_names_file_and_key(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text("batch_sise = 30\n")
    with pytest.raises(ConfigError) as info:
        load_config(Example, path)
    assert (
        str(path) in str(info.value) and "batch_sise" in str(info.value) and "unknown key" in str(info.value)
    )


def test_out_of_range_nested_value_names_dotted_key(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text("[inner]\nstrength = 3\n")
    with pytest.raises(ConfigError, match=r"inner\.strength"):
        load_config(Example, path)


def test_wrong_type_from_command_line_says_so():
    with pytest.raises(ConfigError, match=r"command line: batch_size"):
        load_config(Example, None, [("batch_size", "many")])


def test_toml_syntax_error_names_file_and_line(tmp_path: Path):
    path = tmp_path / "broken.toml"
    path.write_text("a = 1\nb = = 2\n")
    with pytest.raises(ConfigError, match=r"broken\.toml: invalid TOML.*line 2"):
        read_toml(path)


def test_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Example, tmp_path / "nope.toml")


def test_dump_toml_round_trips(tmp_path: Path):
    config = Example(batch_size=33, name='we"ird', inner=Inner(flip=False, strength=0.25))
    path = tmp_path / "out.toml"
    path.write_text(dump_toml(config.model_dump()))
    assert load_config(Example, path) == config


def test_dump_toml_round_trips_a_train_recipe_with_miner_stages(tmp_path: Path):
    from facetool.config.train import TrainConfig

    config = TrainConfig(
        miner_stages=[{"epoch": 10, "miner": "hard"}, {"epoch": 20, "miner": "semihard-strict"}],
        lr_schedule="cosine",
        warmup_epochs=2,
    )
    path = tmp_path / "train.toml"
    path.write_text(dump_toml(config.model_dump(mode="json")))
    assert (
        'miner_stages = [{epoch = 10, miner = {name = "hard"}}, {epoch = 20, miner = {name = "semihard-strict"}}]'
        in path.read_text()
    )
    assert load_config(TrainConfig, path) == config


# --- issue 13: bounded reads, BOM, no nan/inf, bounded image sizes; issue 14.6: one path to a config ---------


def _all_models() -> list[type[StrictModel]]:
    """Every settings model of every command, nested sections included."""
    from facetool.config.dataset import CacheSettings, FilterSettings
    from facetool.config.demo import DemoConfig
    from facetool.config.detect import DetectConfig
    from facetool.config.evaluate import EmbedConfig, EvalConfig
    from facetool.config.protocol import ProtocolConfig
    from facetool.config.train import TrainConfig

    found: list[type[StrictModel]] = []
    todo: list[type[StrictModel]] = [
        CacheSettings, FilterSettings, DemoConfig, DetectConfig, EmbedConfig, EvalConfig, ProtocolConfig, TrainConfig
    ]  # fmt: skip
    while todo:
        model = todo.pop()
        if model in found:
            continue
        found.append(model)
        for field in model.model_fields.values():
            for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
                if isinstance(arg, type) and issubclass(arg, StrictModel):
                    todo.append(arg)
    return found


def _fields(kind: type) -> list[tuple[type[StrictModel], str]]:
    return [
        (model, name)
        for model in _all_models()
        for name, field in model.model_fields.items()
        if field.annotation is kind or kind in getattr(field.annotation, "__args__", ())
    ]


def test_an_endless_config_stream_is_refused_without_reading_it_all():
    with pytest.raises(ConfigError, match=r"/dev/zero: config file is larger than"):
        load_config(Example, Path("/dev/zero"))


def test_a_utf8_bom_is_accepted(tmp_path: Path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbfbatch_size = 12\n")
    assert load_config(Example, path).batch_size == 12


def test_a_config_that_is_not_utf8_names_the_file_and_line(tmp_path: Path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "ok"\nname2 = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"latin1\.toml:2: config file is not UTF-8"):
        load_config(Example, path)


def _opts_into_inf(model: type[StrictModel], name: str) -> bool:
    return any(getattr(m, "allow_inf_nan", False) for m in model.model_fields[name].metadata)


FLOAT_FIELDS = [(model, name) for model, name in _fields(float) if not _opts_into_inf(model, name)]
INF_FIELDS = [(model, name) for model, name in _fields(float) if _opts_into_inf(model, name)]


def test_there_are_float_settings_to_check():
    assert len(FLOAT_FIELDS) >= 10 and any(name == "learning_rate" for _, name in FLOAT_FIELDS)


@pytest.mark.parametrize(("model", "name"), FLOAT_FIELDS, ids=[f"{m.__name__}.{n}" for m, n in FLOAT_FIELDS])
@pytest.mark.parametrize("bad", ["inf", "-inf", "nan"])
def test_no_float_setting_accepts_nan_or_inf(model: type[StrictModel], name: str, bad: str, tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text(f"{name} = {bad}\n")
    with pytest.raises(ConfigError, match=rf"{path}: {name}: Input should be a finite number"):
        load_config(model, path)


def test_no_setting_opts_into_inf():
    """Every float setting refuses inf and NaN (the triplet margin did, as a fault drill, until it was retired)."""
    assert INF_FIELDS == []


def test_learning_rate_inf_is_rejected_from_the_command_line():
    from facetool.config.train import TrainConfig

    with pytest.raises(ConfigError, match="command line: learning_rate: Input should be a finite number"):
        build_config(TrainConfig, None, ["learning_rate=inf"])


IMAGE_SIZE_FIELDS = [(m, n) for m, n in _fields(int) if "image_size" in n]


def test_every_image_size_setting_is_found():
    names = {f"{m.__name__}.{n}" for m, n in IMAGE_SIZE_FIELDS}
    assert {"TrainConfig.image_size", "DetectConfig.image_size", "DemoConfig.image_size"} <= names


@pytest.mark.parametrize(
    ("model", "name"), IMAGE_SIZE_FIELDS, ids=[f"{m.__name__}.{n}" for m, n in IMAGE_SIZE_FIELDS]
)
@pytest.mark.parametrize("size", [2000, 1_000_000, 0, 31])
def test_image_sizes_are_bounded_with_a_message(model: type[StrictModel], name: str, size: int):
    with pytest.raises(
        ConfigError, match=rf"command line: {name}: Input should be (less|greater) than or equal to"
    ):
        load_config(model, None, [(name, size)])
    assert getattr(load_config(model, None, [(name, 160)]), name) == 160


def test_build_config_layers_defaults_file_sets_and_options(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text('batch_size = 30\nname = "file"\n[inner]\nstrength = 0.5\n')
    config = build_config(
        Example, path, ["name=set", "inner.flip=false", "batch_size=40"], {"batch_size": 50, "name": None}
    )
    assert (config.batch_size, config.name, config.inner.flip, config.inner.strength) == (
        50,
        "set",
        False,
        0.5,
    )
    assert build_config(Example, None, None, {"name": Path("a/b")}).name == "a/b"
    assert build_config(Example) == Example()


def test_field_help_shows_the_models_default():
    assert field_help(Example, "batch_size", "Images per batch.") == "Images per batch. (default: 90)"
    assert field_help(Example, "inner.flip") == "(default: true)"
    from facetool.config.train import TrainConfig

    assert field_help(TrainConfig, "num_epochs").endswith("(default: 50)")
    assert field_help(TrainConfig, "data_dir") == TrainConfig.model_fields["data_dir"].description


@pytest.mark.parametrize("text", ["0\r0=1", "a\nb=1", "x\x1b[2J=1"])
def test_an_unknown_key_with_control_characters_is_named_on_one_line(text):
    from facetool.config.train import TrainConfig

    with pytest.raises(ConfigError) as info:
        load_config(TrainConfig, None, [parse_override(text)])
    message = str(info.value)
    assert "unknown key" in message and message.isprintable(), repr(message)


@pytest.mark.parametrize(
    "sets",
    [
        ["loss=arcface", "loss.scale=32.0"],
        ["loss.scale=32.0", "loss=arcface"],
        ["loss.name=arcface", "loss.scale=32.0"],
    ],
)
def test_a_loss_name_then_its_table_keys_make_one_table(sets: list[str]):
    from facetool.config.protocol import ProtocolConfig
    from facetool.config.train import TrainConfig

    config = build_config(TrainConfig, None, sets)
    assert (config.loss.name, config.loss.settings) == ("arcface", {"scale": 32.0})
    protocol = build_config(ProtocolConfig, None, [f"train.{text}" for text in sets])
    assert (protocol.train.loss.name, protocol.train.loss.settings) == ("arcface", {"scale": 32.0})


def test_a_loss_named_in_the_file_takes_table_keys_from_the_command_line(tmp_path: Path):
    from facetool.config.train import TrainConfig

    path = tmp_path / "c.toml"
    path.write_text('loss = "arcface"\n')
    config = build_config(TrainConfig, path, ["loss.margin=0.3"])
    assert (config.loss.name, config.loss.settings) == ("arcface", {"margin": 0.3})


def test_a_plain_value_is_still_not_a_section():
    from facetool.config.train import TrainConfig

    with pytest.raises(ConfigError, match="'optimizer' is not a section"):
        build_config(TrainConfig, None, ["optimizer=sgd", "optimizer.x=1"])


def test_train_prints_the_table_a_loss_name_and_its_keys_make():
    from cli_helpers import facetool_in_process

    result = facetool_in_process(
        "train", "--set", "loss=arcface", "--set", "loss.scale=16.0", "--print-config"
    )
    assert result.returncode == 0, result.stderr
    assert '[loss]\nname = "arcface"\nscale = 16.0' in result.stdout


def test_another_plugin_named_over_a_table_leaves_the_old_plugins_keys(tmp_path: Path):
    from facetool.config.train import TrainConfig

    path = tmp_path / "c.toml"
    path.write_text('[loss]\nname = "arcface"\nscale = 16.0\n')
    assert build_config(TrainConfig, path, ["loss=triplet"]).loss.settings == {}
    assert build_config(TrainConfig, path, ["loss=arcface"]).loss.settings == {"scale": 16.0}


def leaf_keys(model: type, prefix: str = "") -> list[str]:
    """Every setting of `model` a user can write, nested sections spelt out; plugin tables (a name and the
    plugin's own keys) are one choice each and not counted."""
    from pydantic import BaseModel

    from facetool.config.base import NamedTable

    keys = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, NamedTable):
            continue
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            keys += leaf_keys(kind, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def test_train_config_has_at_most_45_settings_besides_plugin_tables():
    from facetool.config.train import TrainConfig

    keys = leaf_keys(TrainConfig)
    assert len(keys) <= 45, keys
    for internal in (
        "embed_batch_size",
        "engine.channels_last",
        "engine.fused_optimizer",
        "data.resize_once",
    ):
        assert internal not in keys


def test_configs_written_before_the_internal_knobs_became_constants_still_load(tmp_path: Path):
    """A run folder's config.toml (or a checkpoint's config) of an older version holds the retired keys and the
    older preload values; they load, the retired keys ignored."""
    from facetool.config.train import TrainConfig

    path = tmp_path / "config.toml"
    path.write_text(
        'embed_batch_size = 128\n\n[engine]\ncompile = "none"\nchannels_last = true\nfused_optimizer = "auto"\n\n'
        '[data]\npreload = "host"\nresize_once = false\n'
    )
    config = load_config(TrainConfig, path)
    assert (config.engine.compile, config.data.preload) == ("none", "preload")
    assert "resize_once" not in config.model_dump()["data"] and "embed_batch_size" not in config.model_dump()


@pytest.mark.parametrize("key", ["batch_size", "commit_images", "commit_seconds"])
def test_detection_tuning_knobs_are_retired_with_a_reason(key: str, tmp_path: Path):
    """How often detect commits and how many images a worker task holds are constants now: naming one is a
    one-line error saying so, on the command line and in a config file's [detect] table."""
    from cli_helpers import facetool_in_process

    from facetool.config.protocol import ProtocolConfig

    done = facetool_in_process("detect", tmp_path, "--set", f"{key}=3")
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert f"command line: {key}: retired: " in done.stderr and "facetool.detection.runner" in done.stderr
    path = tmp_path / "protocol.toml"
    path.write_text(f"[detect]\n{key} = 3\n")
    with pytest.raises(ConfigError, match=rf"{path}: detect\.{key}: retired: .*; remove it"):
        load_config(ProtocolConfig, path)


def test_the_margin_must_be_finite():
    """`alpha = inf` is no longer a way to force a non-finite loss (tests use the `test-overflow` loss)."""
    from facetool.config.train import TrainConfig

    with pytest.raises(ConfigError, match="command line: alpha: Input should be a finite number"):
        build_config(TrainConfig, None, ["alpha=inf"])
