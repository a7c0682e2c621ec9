#!/usr/bin/env bash
# The book on Colab's stack: Python 3.13 with Colab's package versions, as far as a machine
# without Colab can have them.
#
#   bash scripts/colab_stack_check.sh [FREEZE]   # FREEZE default ../shared/colab/pip-freeze.txt
#   COLAB_WHEELS=DIR bash scripts/colab_stack_check.sh   # install from wheels downloaded before
#   COLAB_REUSE=1 bash scripts/colab_stack_check.sh      # keep .venv-colab/ of an earlier run
#
# 1. A fresh venv (.venv-colab/, Python 3.13 from $COLAB_PYTHON, else pyenv's 3.13.0).
# 2. Colab's `pip freeze` as pip constraints: its `name==version` lines, plus the torch wheels
#    it names by URL turned into `name==version` (PyTorch's CPU index, $COLAB_TORCH_INDEX, gives
#    the `+cpu` builds Colab has; where it cannot be reached, PyPI's build of the same version);
#    packages that requirements-colab.txt pins are left out (on Colab the setup cell's pip
#    upgrades them, so must this check).
# 3. Colab's preinstalled packages the book uses (COLAB_HAS below, at Colab's versions), then
#    requirements-colab.txt and the package as the setup cell does (`pip install -r ... -e .`,
#    unconstrained, as on Colab), listing every package whose version then differs from Colab's.
# 4. Every module of tl_helpers imported; chapters 1 and 5 run on the smoke profile through
#    the runner, and their run cards held to tests/smoke_floors.yml. Prints the time of each
#    step. CI runs it after the main suite (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
freeze=${1:-../shared/colab/pip-freeze.txt}
python=${COLAB_PYTHON:-}
if [ -z "$python" ]; then  # pyenv's 3.13 where pyenv is, else a python3.13 on PATH
  python="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")/versions/3.13.0/bin/python"
  [ -x "$python" ] || python=$(command -v python3.13 || true)
fi
if [ -z "$python" ] || ! "$python" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
  why="none found in pyenv (3.13.0) or as python3.13 on PATH"
  [ -n "${COLAB_PYTHON:-}" ] && why="COLAB_PYTHON=$COLAB_PYTHON is not it"
  echo "error: the Colab-stack check needs Python 3.13 (Colab's): $why. Install it" \
       "(pyenv install 3.13.0) or name one: COLAB_PYTHON=/path/to/python3.13" >&2
  exit 2
fi
venv=.venv-colab
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
SECONDS=0
step() { echo "[$(printf '%4d' "$SECONDS") s] $*"; }

# What Colab ships and the book imports (requirements-colab.txt adds the rest).
COLAB_HAS="numpy pandas pillow tifffile opencv-python-headless scikit-learn scikit-image scipy matplotlib
seaborn tqdm pyyaml requests tensorflow keras torch torchvision ipykernel ipython nbformat nbclient
threadpoolctl"
# Colab's core, which the setup cell's install must leave at Colab's versions (checked below).
COLAB_KEEP="protobuf numpy pandas scipy scikit-learn pillow matplotlib tensorflow keras torch torchvision
opencv-python-headless grpcio"

step "constraints from $freeze"
pinned=$(grep -vE '^\s*(#|$)' requirements-colab.txt | sed -E 's/[=<>!~ ].*//' | tr 'A-Z_' 'a-z-')
{
  grep -E '^[A-Za-z0-9_.-]+==[^ ]+$' "$freeze"
  # torch @ https://download.pytorch.org/whl/cpu/torch-2.11.0%2Bcpu-cp313-...whl -> torch==2.11.0
  sed -nE 's#^([A-Za-z0-9_-]+) @ https://download\.pytorch\.org/whl/[a-z0-9]+/[A-Za-z0-9_]+-([0-9.]+)%2B[a-z0-9]+-.*#\1==\2#p' "$freeze"
} | grep -viE '^nvidia-' | while IFS= read -r line; do
  # (nvidia-*: CUDA libraries Colab's CPU runtime has for other packages; PyPI's torch pins its own)
  name=$(echo "${line%%==*}" | tr 'A-Z_' 'a-z-')
  echo "$pinned" | grep -qx "$name" || echo "$line"
done > "$work/constraints.txt"
echo "  $(wc -l < "$work/constraints.txt") constraints; left to requirements-colab.txt: $(echo $pinned)"

if [ "${COLAB_REUSE:-}" = 1 ] && [ -x "$venv/bin/python" ]; then  # the venv of an earlier run, as it is
  step "reusing $venv ($("$venv/bin/python" --version))"
else
step "venv $venv with $("$python" --version)"
rm -rf "$venv"
"$python" -m venv "$venv"
index=${COLAB_TORCH_INDEX-https://download.pytorch.org/whl/cpu}
if [ -n "$index" ] && ! "$python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=5)" "$index" 2>/dev/null; then
  echo "  $index cannot be reached: torch and torchvision come from PyPI (CUDA builds of Colab's versions)"
  index=
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q ${index:+--extra-index-url "$index"})
if [ -n "${COLAB_WHEELS:-}" ]; then  # wheels fetched beforehand (`pip download -d DIR ...`): no network
  pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q --no-index --find-links "$COLAB_WHEELS")
fi
step "Colab's preinstalled packages, at Colab's versions"
"${pip[@]}" -c "$work/constraints.txt" $COLAB_HAS
# Without the constraints, as on Colab: pip may upgrade what requirements-colab.txt needs;
# the list below shows every version that moved away from Colab's.
step "requirements-colab.txt and the package (the setup cell's install)"
"${pip[@]}" -r requirements-colab.txt -e .
"$venv/bin/python" -m pip freeze > "$work/installed.txt"
step "installed versions that differ from Colab's:"
while IFS= read -r line; do
  name=${line%%==*}
  got=$(grep -iE "^${name//[-_.]/[-_.]}==" "$work/installed.txt" || true)
  [ -n "$got" ] && [ "$got" != "$line" ] && echo "  $line on Colab, here ${got#*==}"
done < <(grep -E '^[A-Za-z0-9_.-]+==[^ ]+$' "$freeze") || true
echo "  (a package Colab has but the first install did not need comes at the newest version here)"
# The setup cell must not move the packages Colab's own software is built on: a protobuf lifted
# past 5.x, for one, breaks grpcio-status (<6) and the Google clients that use it.
moved=""
for name in $COLAB_KEEP; do
  colab=$(grep -iE "^${name//[-_.]/[-_.]}==" "$freeze" | head -1 || true)
  here=$(grep -iE "^${name//[-_.]/[-_.]}==" "$work/installed.txt" | head -1 || true)
  if [ -n "$colab" ] && [ "${colab#*==}" != "${here#*==}" ]; then
    moved="$moved ${colab%%==*} (${colab#*==} -> ${here#*==})"
  fi
done
if [ -n "$moved" ]; then
  echo "error: installing requirements-colab.txt moves Colab's own:$moved; pin what pulls them to a" \
       "version that keeps Colab's" >&2
  exit 1
fi
echo "  Colab's $(echo $COLAB_KEEP | wc -w) core packages kept at its versions ($(echo $COLAB_KEEP))"
fi

step "import every module"
"$venv/bin/python" - <<'EOF'
import importlib, pkgutil, sys
import tl_helpers
failed = []
modules = [m.name for m in pkgutil.walk_packages(tl_helpers.__path__, "tl_helpers.")
           if not m.name.endswith("__main__")]  # a __main__ runs its command line when imported
for name in modules:
    try:
        importlib.import_module(name)
    except Exception as error:  # every failure listed, not only the first
        failed.append(f"{name}: {type(error).__name__}: {error}")
print(f"  {sys.version.split()[0]}: imported {len(modules)} modules, {len(failed)} failed")
print("\n".join("  " + f for f in failed))
sys.exit(1 if failed else 0)
EOF
step "chapters 1 and 5, smoke profile, through the runner"
unset TL_PROFILE
TL_PROJECT_ROOT=$PWD "$venv/bin/python" -m tl_helpers.workflow.runner --profile smoke --out "$work/runs" --no-progress \
  notebooks/01_xception_brain_tumor.ipynb notebooks/05_pcam_resnet50_pytorch.ipynb
step "their smoke floors (tests/smoke_floors.yml)"
TL_PROJECT_ROOT=$PWD "$venv/bin/python" -m tl_helpers.workflow.floors "$work/runs" \
  01_xception_brain_tumor 05_pcam_resnet50_pytorch
step "done: Colab's stack runs the smoke chapters"
