#!/usr/bin/env bash
# The GPU checks and figures in one run, for a machine with a CUDA GPU (kgrec's tests and
# benchmarks otherwise run on the CPU). In order of importance, each step time-boxed so a
# slow one cannot starve the rest:
#   1. the gnn tests and the batch-scoring tests on CUDA (TrainSettings' device "auto");
#   2. LightGCN on Gowalla trained on the GPU (benchmarks/gowalla_lightgcn.py);
#   3. kgrec vs PyG LightGCN seconds per epoch on the GPU (benchmarks/train_speed.py);
#   4. batch top-K scoring on the GPU (benchmarks/score_speed.py);
#   5. the quality benchmark on ml-100k and Scientific on the GPU (benchmarks/quality.py:
#      every model, the fusion and the ablation; converges in minutes there).
# Results go to OUT_DIR as *_cuda.json plus suite.log (every step's whole output).
#
#   bash benchmarks/cuda_suite.sh OUT_DIR [GOWALLA_MINUTES=3.5] [ML100K_MINUTES=0.5]
#
# Needs ../shared/data/gowalla (or $KGREC_SHARED_DATA) and the cached ml-100k wheel
# ($KGREC_DATA_CACHE_DIR, fetched once by kg.extract.recbole.fetch_ml100k).
set -u
OUT=${1:?usage: cuda_suite.sh OUT_DIR [GOWALLA_MINUTES] [ML100K_MINUTES]}
GOWALLA_MIN=${2:-3.5}
ML100K_MIN=${3:-0.5}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
LOG="$OUT/suite.log"
cd "$(dirname "$0")/.."

step() {  # step NAME LIMIT_SECONDS COMMAND...: run, log, and print a one-line verdict
  local name=$1 limit=$2 start rc
  shift 2
  start=$(date +%s)
  echo "===== $name (limit ${limit}s): $*" >>"$LOG"
  timeout "$limit" "$@" >>"$LOG" 2>&1
  rc=$?
  echo "===== $name: exit $rc after $(( $(date +%s) - start ))s" | tee -a "$LOG"
}

step environment 30 bash -c "nvidia-smi -L; $PY -c 'import torch, torch_geometric, pandas, \
numpy, transformers; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \
torch.cuda.get_device_name(0), \"pyg\", torch_geometric.__version__, \"pandas\", \
pandas.__version__, \"numpy\", numpy.__version__, \"transformers\", transformers.__version__)'"
step tests 150 "$PY" -m pytest -q -p no:cacheprovider -m "not neo4j" tests/gnn \
  tests/fusion/test_fusion_batch.py
limit=$(awk -v m="$GOWALLA_MIN" 'BEGIN { printf "%d", m * 60 + 60 }')
step gowalla_lightgcn "$limit" "$PY" benchmarks/gowalla_lightgcn.py --device cuda \
  --max-minutes "$GOWALLA_MIN" --eval-every 10 --out "$OUT/gowalla_lightgcn_cuda.json"
step train_speed 90 "$PY" benchmarks/train_speed.py --device cuda --batches 30 \
  --out "$OUT/train_speed_cuda.json"
step score_speed 90 "$PY" benchmarks/score_speed.py --device cuda --users 32768 \
  --chunk 8192 --repeats 2 --threads "$(nproc)" --out "$OUT/score_speed_cuda.json"
limit=$(awk -v m="$ML100K_MIN" 'BEGIN { printf "%d", m * 60 * 14 + 120 }')
step quality_ml100k "$limit" "$PY" benchmarks/quality.py --dataset ml-100k \
  --max-minutes "$ML100K_MIN" --threads "$(nproc)" --out "$OUT/quality_ml100k_cuda.json"
step quality_scientific "$limit" "$PY" benchmarks/quality.py --dataset scientific \
  --max-minutes "$ML100K_MIN" --threads "$(nproc)" --out "$OUT/quality_scientific_cuda.json"
grep -hE "passed|failed|error|Recall@20|s/epoch|users/s|NDCG@20" "$LOG" | tail -n 20
