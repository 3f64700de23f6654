#!/usr/bin/env bash
# Proves pyfrcnn's GPU path in one run of at most 8 minutes on one GPU, and
# writes every figure to OUTDIR (default gpu_check_out/): summary.json, one
# log per step, cuda_tests.xml, the main job's run folder. The steps and the
# figures are described in benchmarks/gpu_check.py.
#
#   bash benchmarks/gpu_check.sh [--cpu] [OUTDIR]
#
# --cpu runs the same steps on the CPU with tiny sizes (a few steps, small
# images), in well under 3 minutes; tests/test_gpu_check.py runs it.
#
# It does not use the repository's virtual environment: it runs with
# $PYTHON (default python3, on the GPU machine the Python 3.12 that holds
# torch, torchvision and cupy), puts the repository on PYTHONPATH, and when
# something the project needs does not import (pyfrcnn/proto/pyfrcnn_pb2.py
# needs protobuf >= 7.35.1, newer than some images hold) installs the wheels
# of .gpu_wheels/ (benchmarks/fetch_gpu_wheels.sh downloads them; the folder
# is git-ignored) into a temporary folder put first on PYTHONPATH.
#
# On the GPU machine of the device tool, from the repository root here:
#   1. once: bash benchmarks/fetch_gpu_wheels.sh
#   2. run, with carry [".gpu_wheels"] and timeout_s 540:
#        bash benchmarks/gpu_check.sh /tmp/gpu_check; s=$?;
#        cp /tmp/gpu_check/summary.json $OUT/;
#        tar czf $OUT/gpu_check_logs.tgz -C /tmp --exclude='*.weights'
#          --exclude='*.solverstate' --exclude=data_cache --exclude=cache gpu_check;
#        exit $s
#      (one line; $OUT brings back at most 8 files, hence the archive). The
#      summary table is the end of the output.
set -u

cpu=""
if [ "${1:-}" = "--cpu" ]; then
  cpu="--cpu"
  shift
fi
out="${1:-gpu_check_out}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
cd "$repo" || exit 2
mkdir -p "$out" || exit 2
out="$(cd "$out" && pwd)"

export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

# The Faster R-CNN layers reach the engine through the `pyfrcnn.plugins` entry
# point, which only an installed distribution declares: without one (a bare
# checkout on PYTHONPATH) the engine would not know the data and detection
# sections, and layers/ imports as `pyfrcnn_layers` only once installed. So the
# checkout gets the metadata an install would write and that name (a link), in a
# folder of its own on PYTHONPATH (nothing is built or installed).
meta="${TMPDIR:-/tmp}/pyfrcnn_gpu_meta"
mkdir -p "$meta/pyfrcnn-0.0.0.dist-info" || exit 2
printf 'Metadata-Version: 2.1\nName: pyfrcnn\nVersion: 0.0.0\n' \
  >"$meta/pyfrcnn-0.0.0.dist-info/METADATA"
printf '[console_scripts]\npyfrcnn = pyfrcnn.cli:main\n\n[pyfrcnn.plugins]\nfaster_rcnn = pyfrcnn_layers\n' \
  >"$meta/pyfrcnn-0.0.0.dist-info/entry_points.txt"
ln -sfn "$repo/layers" "$meta/pyfrcnn_layers"  # the name the layers/ folder installs under
if ! "$python" -c 'import importlib.metadata as m, sys; sys.exit(not any(e.value == "pyfrcnn_layers" for e in m.entry_points(group="pyfrcnn.plugins")))' 2>/dev/null; then
  export PYTHONPATH="$PYTHONPATH:$meta"
fi

needs='import google.protobuf, numpy, yaml, PIL, torch; import pyfrcnn.proto.pyfrcnn_pb2, pyfrcnn_layers'
if ! "$python" -c "$needs" 2>"$out/setup.log"; then
  if compgen -G "$repo/.gpu_wheels/*.whl" >/dev/null; then
    site="${TMPDIR:-/tmp}/pyfrcnn_gpu_site"
    echo "installing .gpu_wheels/ into $site" | tee -a "$out/setup.log"
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$site" "$repo"/.gpu_wheels/*.whl >>"$out/setup.log" 2>&1
    export PYTHONPATH="$site:$PYTHONPATH"
    if ! "$python" -c "$needs" 2>>"$out/setup.log"; then
      echo "gpu_check: the project still does not import; see $out/setup.log" >&2
    fi
  else
    echo "gpu_check: the project does not import and there is no .gpu_wheels/" \
         "(bash benchmarks/fetch_gpu_wheels.sh); see $out/setup.log" >&2
  fi
fi

# The steps run even when the setup failed: each records its own failure.
exec "$python" "$repo/benchmarks/gpu_check.py" $cpu --out "$out" --python "$python"
