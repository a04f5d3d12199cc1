"""Fuzzed user input (pairs files, TOML configs, `key=value` overrides, identity lists): every input either works
or raises a FacetoolError with a one-line message; nothing else escapes from deep inside a library."""

from __future__ import annotations

import string
import tempfile
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import facetool_in_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from reliability_helpers import assert_one_line_error

from facetool.config.base import dump_toml, load_config, parse_override
from facetool.config.detect import DetectConfig
from facetool.config.evaluate import EmbedConfig, EvalConfig
from facetool.config.train import TrainConfig
from facetool.curation import read_identity_list
from facetool.errors import ConfigError, FacetoolError, PairsError, UsageError
from facetool.evaluation.pairs import parse_pairs, read_pairs

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODELS = [TrainConfig, DetectConfig, EvalConfig, EmbedConfig]

VALID_PAIRS = "2\t1\nAaron_Peirsol\t1\t2\nAaron_Peirsol\t3\tAbdoulaye_Wade\t1\nAl_Gore\t1\t3\nAl_Gore\t2\tAmy_Smart\t2\n"


def _one_line(exc: BaseException) -> None:
    text = str(exc)
    assert text.strip() and "\n" not in text and "\r" not in text, repr(text)


def _write(data: bytes) -> Path:
    with tempfile.NamedTemporaryFile(delete=False, suffix=".txt") as handle:
        handle.write(data)
    return Path(handle.name)


# --- pairs files ---------------------------------------------------------------------------------------------

pairs_token = st.one_of(
    st.sampled_from(["Aaron_Peirsol", "Al_Gore", "1", "2", "0", "-3", "10", "300", "x", "", "1e3", "৩"]),
    st.text(alphabet=string.printable, max_size=8),
)
pairs_line = st.lists(pairs_token, max_size=5).map("\t".join)


@st.composite
def mutated_pairs(draw: st.DrawFn) -> str:
    """A valid pairs file with lines replaced, dropped, duplicated or inserted."""
    lines = VALID_PAIRS.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["replace", "drop", "dup", "insert"]))
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        if op == "replace" and lines:
            lines[i] = draw(pairs_line)
        elif op == "drop" and lines:
            del lines[i]
        elif op == "dup" and lines:
            lines.insert(i, lines[i])
        else:
            lines.insert(i, draw(pairs_line))
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n\n", "\r\n"]))


@FUZZ
@given(st.one_of(mutated_pairs(), st.lists(pairs_line, max_size=8).map("\n".join)))
def test_pairs_text_parses_or_is_a_pairs_error(text: str) -> None:
    try:
        pairs = parse_pairs(text.splitlines(), "fuzz.txt")
    except PairsError as exc:
        _one_line(exc)
        assert str(exc).startswith("fuzz.txt")
    else:
        blocks = pairs.n_folds or 1
        assert len(pairs.pairs) == blocks * 2 * pairs.pairs_per_fold


@FUZZ
@given(st.binary(max_size=200) | mutated_pairs().map(str.encode))
def test_pairs_bytes_on_disk_read_or_fail_naming_the_file(data: bytes) -> None:
    path = _write(data)
    try:
        read_pairs(path)
    except PairsError as exc:
        _one_line(exc)
        assert str(path) in str(exc)
    finally:
        path.unlink()


# --- TOML configs --------------------------------------------------------------------------------------------


def _keys(model: Any) -> list[str]:
    return [*model.model_fields, "unknown_key", "detect", "engine", "augment"]


scalar = st.one_of(
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["auto", "cpu", "cuda:0", "semihard", "none", "jpeg", "largest", "euclidean"]),
)
value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3), max_leaves=5)


@st.composite
def config_tables(draw: st.DrawFn) -> tuple[Any, dict[str, Any]]:
    model = draw(st.sampled_from(MODELS))
    keys = _keys(model)
    table: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(keys), max_size=6, unique=True)):
        table[key] = draw(value | st.dictionaries(st.sampled_from(keys), scalar, max_size=3))
    return model, table


@FUZZ
@given(config_tables())
def test_toml_config_loads_or_is_a_config_error(case: tuple[Any, dict[str, Any]]) -> None:
    model, table = case
    try:
        text = dump_toml(table)
    except TypeError:  # a value TOML cannot hold (dump_toml only writes plain data)
        return
    path = _write(text.encode())
    try:
        config = load_config(model, path)
    except ConfigError as exc:
        _one_line(exc)
        assert str(path) in str(exc)
    else:
        assert isinstance(config, model)
    finally:
        path.unlink()


@FUZZ
@given(
    st.sampled_from(MODELS),
    st.binary(max_size=120) | st.text(alphabet=string.printable, max_size=120).map(str.encode),
)
def test_arbitrary_toml_bytes_load_or_are_a_config_error(model: Any, data: bytes) -> None:
    path = _write(data)
    try:
        load_config(model, path, section=None)
        load_config(model, path, section="detect")
    except ConfigError as exc:
        _one_line(exc)
        assert str(path) in str(exc)
    finally:
        path.unlink()


override_text = st.one_of(
    st.text(alphabet=string.printable, max_size=30),
    st.tuples(st.sampled_from(["batch_size", "engine.compile", "augment", "data.preload.x", "threshold", "detect.select",
                               "flip", "a..b", "", "."]),
              st.text(alphabet=string.printable, max_size=12)).map("=".join),
)  # fmt: skip


def _expected(model: Any, overrides: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """(dotted key, value the model must hold) of each scalar override no later one replaces, validated
    independently: by the annotation of that field alone."""
    checks = []
    for i, (key, raw) in enumerate(overrides):
        later = [k for k, _ in overrides[i + 1 :]]
        if any(k == key or key.startswith(k + ".") or k.startswith(key + ".") for k in later):
            continue
        if isinstance(raw, dict | list):
            continue
        owner = model
        *parents, name = key.split(".")
        for part in parents:
            owner = owner.model_fields[part].annotation
        checks.append((key, TypeAdapter(owner.model_fields[name].annotation).validate_python(raw)))
    return checks


def _value_at(config: Any, key: str) -> Any:
    for part in key.split("."):
        config = getattr(config, part)
    return config


@FUZZ
@given(st.sampled_from(MODELS), st.lists(override_text, max_size=4))
def test_overrides_apply_or_are_a_config_error(model: Any, texts: list[str]) -> None:
    try:
        overrides = [parse_override(t) for t in texts]
        config = load_config(model, None, overrides)
    except ConfigError as exc:
        _one_line(exc)
    else:
        for key, value in _expected(model, overrides):
            assert _value_at(config, key) == value, key


VALID_OVERRIDES = {
    TrainConfig: ["batch_size=30", "learning_rate=0.25", "miner=hard", "augment.flip=false", "engine.compile=none",
                  "num_epochs=7", "image_size=96", "checkpoint_dir=runs/x", "validation.fraction=0.2", "seed=3"],
    DetectConfig: ["threshold=0.7", "select=score", "image_size=200", "margin=3", "workers=2", "encoding=raw"],
    EvalConfig: ["flip=true", "distance=cosine", "batch_size=5", "detect.threshold=0.3", "out=here", "fold=3"],
    EmbedConfig: ["flip=true", "batch_size=9", "detect.image_size=64", "device=cpu"],
}  # fmt: skip


@FUZZ
@given(
    st.sampled_from(MODELS).flatmap(
        lambda m: st.tuples(st.just(m), st.lists(st.sampled_from(VALID_OVERRIDES[m]), max_size=5))
    )
)
def test_valid_overrides_are_applied(case: tuple[Any, list[str]]) -> None:
    model, texts = case
    overrides = [parse_override(t) for t in texts]
    config = load_config(model, None, overrides)
    expected = _expected(model, overrides)
    assert len(expected) == len({k for k, _ in overrides})
    for key, value in expected:
        assert _value_at(config, key) == value != _value_at(model(), key), key


# --- identity lists ------------------------------------------------------------------------------------------

identity_text = st.lists(
    st.one_of(
        st.text(max_size=20), st.sampled_from(["# comment", "Al_Gore", "  Al_Gore  # x", "a/b", "\t", ""])
    ),
    max_size=8,
).map("\n".join)


@FUZZ
@given(st.binary(max_size=120) | identity_text.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_identity_list_reads_or_is_a_usage_error(data: bytes) -> None:
    path = _write(data)
    try:
        names = read_identity_list(path)
    except UsageError as exc:
        _one_line(exc)
        assert str(path) in str(exc)
    else:
        assert all(name and name == name.strip() and "/" not in name for name in names)
    finally:
        path.unlink()


# --- a few of the same through the command line ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "content"),
    [
        ("detect", "threshold = 'high'\n"),
        ("detect", "[detect]\nselect = 3\n"),
        ("train", "batch_size = 1e999\n"),
        ("train", "[engine\ncompile = 1\n"),
        ("train", "\x00\x01binary"),
    ],
)
def test_fuzzed_config_files_through_the_cli(command: str, content: str, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    args = [command, tmp_path, "--config", config] if command == "detect" else [command, "--config", config]
    assert_one_line_error(facetool_in_process(*args), 2, str(config))


def test_fuzzed_identity_list_through_the_cli(tmp_path: Path) -> None:
    listing = tmp_path / "people.txt"
    listing.write_bytes(b"Al_Gore\nsome/path\n")
    result = facetool_in_process(
        "dataset", "filter", tmp_path / "any.h5", "-o", tmp_path / "o.h5", "--include", listing
    )
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_any_other_exception_fails_these_tests() -> None:
    """The oracle above only admits FacetoolError subclasses: check the hierarchy it relies on."""
    assert issubclass(ConfigError, FacetoolError) and issubclass(PairsError, FacetoolError)
    assert not issubclass(ValueError, FacetoolError)


def test_an_endless_identity_list_is_one_usage_error_without_reading_it_all() -> None:
    with pytest.raises(UsageError, match=r"^/dev/zero: identity list is larger than"):
        read_identity_list("/dev/zero")
