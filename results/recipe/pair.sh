#!/usr/bin/env bash
# bash results/recipe/pair.sh MODE SEED: the 16,000-step CPU recipe (K=16 variants, calculator-aware
# loss, d128/4h/3+3/ff512, lr 1e-3, 2,048-token batches) in MODE (cot | answer | filler | shuffled),
# then seen stories, val and test scored in full with the calculator, predictions kept for the paired test.
set -eu
mode=$1; seed=$2
out=runs/recipe/$mode-16k-s$seed
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1  # GSM8K from $GSM8K_DIR or data/gsm8k
python train.py --mode $mode --mask-results --variants 16 --d-model 128 --n-heads 4 --d-ff 512 --batch-tokens 2048 \
  --lr 1e-3 --warmup-steps 200 --eval-interval 2000 --steps 16000 --test-limit 20 --seed $seed --out $out
python evaluate.py $out/last.pt --eval-file results/seen-stories/seen-stories.jsonl --calculator --latency-samples 0 --out $out/eval-seen
python evaluate.py $out/last.pt --split val --calculator --latency-samples 0 --out $out/eval-val
python evaluate.py $out/last.pt --split test --calculator --latency-samples 0 --out $out/eval-test
echo DONE $mode $seed
