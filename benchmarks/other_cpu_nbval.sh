#!/usr/bin/env bash
# nbval over notebooks/ as if on another CPU: the stored smoke outputs must not depend on the
# machine that made them (issue 27). With no second machine at hand, the kernels' arithmetic is
# changed here instead, by capping what the numerical libraries may use:
#
#   avx2     an x86 CPU without AVX-512 (PyTorch ATen, oneDNN in PyTorch and TensorFlow, MKL)
#   generic  no vector extensions past SSE4 and TensorFlow without oneDNN (its Eigen kernels,
#            as on a CPU where oneDNN is off): the widest change in summation order
#
#   bash benchmarks/other_cpu_nbval.sh avx2 [pytest arguments]   # e.g. notebooks/05_*.ipynb
#
# Run it alone, after refreshing stored outputs; a failing cell names an output that is the
# machine's arithmetic (a near-tie decided one way): mask it (tests/nbval_sanitize.cfg) or mark
# the cell nbval-ignore-output, as CONTRIBUTING says. About 5 min (avx2) to 10 (generic).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  avx2) export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2 \
          MKL_ENABLE_INSTRUCTIONS=AVX2 ;;
  generic) export ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 DNNL_MAX_CPU_ISA=SSE41 \
             MKL_ENABLE_INSTRUCTIONS=SSE4_2 TF_ENABLE_ONEDNN_OPTS=0 ;;
  *) echo "usage: bash benchmarks/other_cpu_nbval.sh avx2|generic [pytest arguments]" >&2; exit 2 ;;
esac
shift
unset TL_PROFILE  # the stored outputs are the smoke profile's
[ $# -gt 0 ] || set -- notebooks/
SECONDS=0
status=0
.venv/bin/python -m pytest --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg -q -rf "$@" || status=$?
echo "nbval as another CPU ($(env | grep -E '^(ATEN|ONEDNN|DNNL|MKL_ENABLE|TF_ENABLE)' | sort | tr '\n' ' ')): exit $status after $SECONDS s"
exit "$status"
