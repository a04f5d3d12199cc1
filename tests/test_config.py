"""Config loading: TOML files, overrides, and errors that name the file and the key."""

from pathlib import Path

import pytest
from pydantic import Field

from facetool.config.base import StrictModel, dump_toml, load_config, parse_override, read_toml
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
        'miner_stages = [{epoch = 10, miner = "hard"}, {epoch = 20, miner = "semihard-strict"}]'
        in path.read_text()
    )
    assert load_config(TrainConfig, path) == config
