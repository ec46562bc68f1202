#!/usr/bin/env bash
# The GPU study: five students trained side by side on one GPU (each is too small to fill it),
# then the comparison. Usage: bash .gpu/run.sh PRESET OUTDIR TRAIN_ARGS
set -u
PRESET=${1:-gpu}; RES=${2:-${OUT:-out}}; TARGS=${3:-"--time-budget-min 2.5"}
export GSM8K_DIR=$PWD/.gpu PYTHONUNBUFFERED=1 OMP_NUM_THREADS=3
S=runs/study-$PRESET
mkdir -p "$RES" runs
(nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null; python -c "import torch,sentencepiece;print(torch.__version__, torch.cuda.is_available())") | tee "$RES/env.txt"
python -c "import tokenizer; tokenizer.get_tokenizer()" || exit 1
t0=$(date +%s)
for m in answer cot mixed filler shuffled; do
  python study.py --preset "$PRESET" --out "$S" --modes "$m" --train-args "$TARGS" --eval-args "--latency-samples 5" > "$S-$m.log" 2>&1 &
  sleep 2
done
DEADLINE=${DEADLINE:-260}
while [ "$(jobs -r | wc -l)" -gt 0 ]; do sleep 15;
  if [ $(( $(date +%s) - t0 )) -gt $DEADLINE ]; then echo "deadline: stopping what is still running"; pkill -f study.py; pkill -f train.py; pkill -f evaluate.py; sleep 3; break; fi; echo "$(( $(date +%s) - t0 ))s: $(ls $S/*/metrics.json 2>/dev/null | wc -l) trained, $(ls $S/*/eval-test*/eval.json 2>/dev/null | wc -l) evaluated"; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null; done
wait
E=$(for d in $S/*/eval-test $S/*/eval-test-calc; do [ -f $d/eval.json ] && echo $d; done)
B=$([ -f $S/answer/eval-test/eval.json ] && echo "--baseline $S/answer/eval-test")
timeout 120 python evaluate.py --compare $E $B --out $S/report > "$S-compare.log" 2>&1
echo "done in $(( $(date +%s) - t0 ))s"
tail -3 "$S-compare.log"; cat $S/*/metrics.json | grep -E '"(mode|test_em|steps|train_time_s|tokens_seen)"' 
tar czf "$RES/study-$PRESET.tgz" --exclude='*.pt' $S $S-*.log
ls -la "$RES"
