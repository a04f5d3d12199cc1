"""The wheel check's smoke test: run by .ci/wheel-check with the fresh virtual environment's Python, from a
folder outside the source tree, against the installed (not editable) wheels of facetool and facetool-extras.

It fails, with one line per problem, when the installed packages lack a file the source tree has, a module
does not import, `facetool --version` disagrees with pyproject.toml, `plugins list --json` misses a group or
a declared plugin, or `detect`, `train` or `eval` fails on a few LFW images (skipped, with a message, when
FACETOOL_SHARED is unset).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as metadata
import json
import os
import pkgutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

# distribution name -> (folder of its package in the source tree, the package's import name)
PACKAGES = {
    "facetool": ("", "facetool"),
    "facetool-extras": ("plugins/facetool-extras/src", "facetool_extras"),
}
PYPROJECTS = {"facetool": "pyproject.toml", "facetool-extras": "plugins/facetool-extras/pyproject.toml"}
FOLDS, PER_FOLD = 2, 3  # a View 2 style pairs file of DevTest pairs: 2 folds of 3 matched and 3 mismatched


class CheckFailed(Exception):
    """A check that did not hold; its message is the one line printed."""


def step(name: str):
    """Decorator: time a check and print one line for it."""

    def wrap(fn):
        def run(*args, **kwargs):
            start = time.monotonic()
            detail = fn(*args, **kwargs)
            print(
                f"ok   {name} ({time.monotonic() - start:.1f} s){': ' + detail if detail else ''}", flush=True
            )

        return run

    return wrap


def facetool(bin_dir: Path, *args: str, cwd: Path) -> str:
    """Run the installed `facetool` console script; its stdout, or CheckFailed with its last stderr line."""
    done = subprocess.run([str(bin_dir / "facetool"), *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise CheckFailed(f"facetool {' '.join(args)}: exit {done.returncode}: {last}")
    return done.stdout


@step("installed files match the source tree")
def check_files(source: Path) -> str:
    missing: list[str] = []
    counted = 0
    for dist_name, (folder, package) in PACKAGES.items():
        installed = {str(f) for f in metadata.files(dist_name) or []}
        root = source / folder
        for path in sorted((root / package).rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            counted += 1
            relative = path.relative_to(root).as_posix()
            if relative not in installed:
                missing.append(f"{dist_name}: {relative}")
    if missing:
        raise CheckFailed(f"the wheels lack {len(missing)} file(s) of the source tree: {', '.join(missing)}")
    return f"{counted} files"


@step("every module imports from site-packages")
def check_imports(venv: Path) -> str:
    count = 0
    for package in (p for _, p in PACKAGES.values()):
        module = importlib.import_module(package)
        where = Path(module.__file__).resolve()
        if venv.resolve() not in where.parents:
            raise CheckFailed(f"{package} was imported from {where}, not from the virtual environment {venv}")
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
            try:
                importlib.import_module(info.name)
            except Exception as exc:  # an undeclared dependency or a missing module, reported by name
                raise CheckFailed(f"import {info.name}: {type(exc).__name__}: {exc}") from None
            count += 1
    return f"{count} modules"


@step("facetool --version and both packages' versions")
def check_version(source: Path, bin_dir: Path, cwd: Path) -> str:
    declared = {
        name: tomllib.loads((source / pyproject).read_text())["project"]["version"]
        for name, pyproject in PYPROJECTS.items()
    }
    shown = facetool(bin_dir, "--version", cwd=cwd).strip()
    if shown != f"facetool {declared['facetool']}":
        raise CheckFailed(f"facetool --version says {shown!r}; pyproject.toml says {declared['facetool']}")
    for name, (_, package) in PACKAGES.items():
        found = {metadata.version(name), importlib.import_module(package).__version__}
        if found != {declared[name]}:
            raise CheckFailed(
                f"{name}: installed {sorted(found)}, but its pyproject.toml says {declared[name]}"
            )
    return shown


@step("facetool plugins list --json")
def check_plugins(source: Path, bin_dir: Path, cwd: Path) -> str:
    from facetool.plugins import GROUPS

    rows = json.loads(facetool(bin_dir, "plugins", "list", "--json", cwd=cwd))
    listed = {(r["package"], r["name"], r["target"]): r for r in rows}
    problems = [f"no {kind} listed" for kind in GROUPS.values() if kind not in {r["kind"] for r in rows}]
    for dist_name, pyproject in PYPROJECTS.items():
        groups = tomllib.loads((source / pyproject).read_text())["project"].get("entry-points", {})
        for group, entries in groups.items():
            if group not in GROUPS:
                problems.append(f"{dist_name} declares group {group}, which facetool does not know")
            for name, target in entries.items():
                row = listed.get((dist_name, name, target))
                if row is None:
                    problems.append(f"{dist_name}:{name} ({group}) is not listed")
                elif row["status"] != "ok":
                    problems.append(f"{dist_name}:{name} is {row['status']}: {row['error']}")
    if problems:
        raise CheckFailed("; ".join(problems))
    kinds = sorted({r["kind"] for r in rows})
    return f"{len(rows)} plugins in {len(kinds)} groups ({', '.join(kinds)})"


@step("py.typed marker installed")
def check_typed() -> str:
    import facetool as package

    if not (Path(package.__file__).parent / "py.typed").is_file():
        raise CheckFailed("facetool/py.typed is not in the installed package")
    return ""


def mini_lfw(shared: Path, root: Path) -> Path:
    """A few LFW images (symlinks) and a pairs file of FOLDS folds of PER_FOLD matched and mismatched pairs."""
    lfw = shared / "lfw"
    lines = (lfw / "pairsDevTest.txt").read_text().splitlines()
    total = int(lines[0])
    matched, mismatched = lines[1 : 1 + total], lines[1 + total : 1 + 2 * total]
    chosen: list[str] = []
    for fold in range(FOLDS):
        part = slice(fold * PER_FOLD, (fold + 1) * PER_FOLD)
        chosen += matched[part] + mismatched[part]
    images = root / "images"
    for line in chosen:
        fields = line.split("\t")
        named = (
            [(fields[0], fields[1]), (fields[0], fields[2])] if len(fields) == 3 else [fields[:2], fields[2:]]
        )
        for name, number in named:
            target = images / name / f"{name}_{int(number):04d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(lfw / "lfw-deepfunneled" / name / target.name)
    (root / "pairs.txt").write_text("\n".join([f"{FOLDS}\t{PER_FOLD}", *chosen]) + "\n")
    return root


@step("detect, train and eval on a few LFW images")
def check_pipeline(shared: Path, bin_dir: Path, cwd: Path) -> str:
    data = mini_lfw(shared, cwd / "lfw")
    faces, run, out = cwd / "faces.h5", cwd / "run", cwd / "eval"
    commands = {
        "detect": ["detect", str(data / "images"), "-o", str(faces), "--model-dir", str(shared / "models" / "ssd-res10")],
        "train": [
            "train", "--data", str(faces), "--checkpoint-dir", str(run), "--num-epochs", "1", "--batch-size", "12",
            "--people-per-batch", "6", "--images-per-person", "2", "--device", "cpu",
            "--set", "epoch_size=2", "--set", "image_size=80", "--set", "validation.fraction=0.0",
        ],
        "eval": ["eval", str(run / "last.pth"), "--data", str(faces), "--pairs", str(data / "pairs.txt"),
                 "--out", str(out), "--device", "cpu"],
    }  # fmt: skip
    took = []
    for name, args in commands.items():
        start = time.monotonic()
        facetool(bin_dir, *args, cwd=cwd)
        took.append(f"{name} {time.monotonic() - start:.1f} s")
    report = json.loads((out / "report.json").read_text())
    pairs = 2 * FOLDS * PER_FOLD
    if report.get("num_pairs") != pairs:
        raise CheckFailed(f"eval scored {report.get('num_pairs')} pairs, not {pairs}")
    images = len(list((data / "images").glob("*/*.jpg")))
    return f"{images} images, {pairs} pairs, accuracy {report['accuracy']:.3f}; {', '.join(took)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=Path, required=True, help="the source tree the wheels were built from"
    )
    parser.add_argument("--workdir", type=Path, required=True, help="an empty folder outside the source tree")
    args = parser.parse_args()
    source, cwd = args.source.resolve(), args.workdir.resolve()
    venv, bin_dir = Path(sys.prefix), Path(sys.executable).parent
    if source == cwd or source in cwd.parents:
        print(f"FAIL the work folder {cwd} is inside the source tree {source}", file=sys.stderr)
        return 1
    os.chdir(cwd)
    shared = os.environ.get("FACETOOL_SHARED")
    try:
        check_files(source)
        check_imports(venv)
        check_version(source, bin_dir, cwd)
        check_plugins(source, bin_dir, cwd)
        check_typed()
        if shared and (Path(shared) / "lfw").is_dir():
            check_pipeline(Path(shared), bin_dir, cwd)
        else:
            print("skip detect, train and eval on LFW: FACETOOL_SHARED is unset (or has no lfw/ folder)")
    except CheckFailed as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
