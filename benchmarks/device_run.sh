#!/usr/bin/env bash
# The command a device call runs, from the repository root, with `carry` naming .devdata and .whl
# (made by benchmarks/device_prepare.sh). Installs the carried wheels and facetool itself (its miners and
# backbones register through entry points, so it must be installed, not only on the path), then:
#   check   benchmarks/gpu_check.py on the carried LFW cache: step engines side by side, then one real
#           epoch at the spec's defaults per engine (issue 6; under 8 minutes)
#   view1   benchmarks/lfw_protocol.py with the recipe given as $2 (default the H200 one) on the carried cache
#           (issue 7: DevTest accuracy, threshold from DevTrain)
#   smoke   both on tiny CPU settings, to check this script anywhere (WHEELS=0 where the carried
#           Python 3.12 wheels do not fit the local Python and its own packages are there)
# Everything it writes goes under $OUT (the device tool brings it back); the tables are printed last.
set -euo pipefail
mode="${1:-check}"
recipe="${2:-benchmarks/recipes/lfw-view1-h200.toml}"
out="${OUT:-/tmp/facetool-device}"
python="${PYTHON:-python3}"
site="${SITE:-/tmp/site}"
mkdir -p "$out" "$site"
export PYTHONUNBUFFERED=1 PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
if [ "${WHEELS:-1}" = 1 ]; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
fi
"$python" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --upgrade --target "$site" \
    . plugins/facetool-extras
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
case "$mode" in
    check)
        "$python" benchmarks/gpu_check.py --cache .devdata/lfw-view1.h5 --work "$out/gpu-check" 2>&1 \
            | tee "$out/gpu-check.log" ;;
    view1)
        "$python" benchmarks/lfw_protocol.py --config "$recipe" --view 1 --faces .devdata/lfw-view1.h5 \
            --set pairs_dir=.devdata --out "$out/view1" --report "$out/benchmarks.md" 2>&1 | tee "$out/view1.log" ;;
    smoke)
        "$python" benchmarks/gpu_check.py --smoke --cache .devdata/lfw-view1.h5 --work "$out/gpu-check"
        "$python" benchmarks/lfw_protocol.py --config "$recipe" --view 1 --faces .devdata/lfw-view1.h5 \
            --set pairs_dir=.devdata --out "$out/view1" --report "$out/benchmarks.md" \
            --set train.device=cpu --set train.num_epochs=1 --set train.epoch_size=2 \
            --set train.backbone=tiny-cnn --set train.image_size=48 --set train.batch_size=30 ;;
    *) echo "usage: benchmarks/device_run.sh check|view1|smoke [RECIPE]" >&2; exit 2 ;;
esac
