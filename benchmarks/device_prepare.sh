#!/usr/bin/env bash
# What a GPU session carries to the device machine, where nothing can be downloaded and ../shared is absent:
#   .devdata/  a compact LFW face cache for the checks and View 1 (the training people, plus every image the
#              DevTrain and DevTest pairs name; JPEG q85, about 46 MiB) and the three pairs files
#   .whl/      wheels of the Python packages the device image lacks (pydantic and its parts, facenet-pytorch)
# Both are ignored through .git/info/exclude; name them in the device call's `carry` (64 MiB in all).
# Run from the repository root:
#   FACETOOL_SHARED=../shared bash benchmarks/device_prepare.sh [FACES_H5]
# FACES_H5 is a detector cache of the whole LFW (`facetool detect lfw-deepfunneled -o FACES_H5`, about 4 minutes
# on 2 cores); without it one is made in runs/lfw-faces.h5.
set -euo pipefail
shared="${FACETOOL_SHARED:-../shared}"
lfw="$shared/lfw"
faces="${1:-runs/lfw-faces.h5}"
facetool="${FACETOOL:-.venv/bin/facetool}"
python="${PYTHON:-python3}"

for path in /.devdata/ /.whl/; do
    grep -qxF "$path" .git/info/exclude || echo "$path" >> .git/info/exclude
done
if [ ! -f "$faces" ]; then
    mkdir -p "$(dirname "$faces")"
    "$facetool" detect "$lfw/lfw-deepfunneled" -o "$faces" --no-progress
fi
mkdir -p .devdata
rm -f .devdata/lfw-view1.h5
"$facetool" dataset filter "$faces" -o .devdata/lfw-view1.h5 --exclude-pairs "$lfw/pairsDevTest.txt" \
    --keep-pairs "$lfw/pairsDevTest.txt" --keep-pairs "$lfw/pairsDevTrain.txt" --jpeg-quality 85
install -m 644 "$lfw/pairs.txt" "$lfw/pairsDevTrain.txt" "$lfw/pairsDevTest.txt" .devdata/

mkdir -p .whl
rm -f .whl/*.whl
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
    facenet-pytorch==2.5.3
du -ch .devdata .whl $(git ls-files) | tail -1 | sed 's/total/to carry with the working tree (limit 64 MiB)/'
