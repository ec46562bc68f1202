#!/usr/bin/env bash
# bash results/recipe/run.sh NAME SEED [extra train flags...]: train cot (masked, K=16) with the CPU recipe + extras, then score seen (calc) and val (calc)
set -u
name=$1; seed=$2; shift 2
out=runs/recipe/$name-s$seed
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1  # GSM8K from $GSM8K_DIR or data/gsm8k
python train.py --mode cot --mask-results --variants 16 --d-model 128 --n-heads 4 --d-ff 512 --batch-tokens 2048 \
  --lr 2e-3 --warmup-steps 200 --eval-interval 2000 --steps 8760 --test-limit 20 --seed $seed "$@" --out $out
python evaluate.py $out/last.pt --eval-file results/seen-stories/seen-stories.jsonl --calculator --latency-samples 0 --out $out/eval-seen
python evaluate.py $out/last.pt --split val --calculator --latency-samples 0 --out $out/eval-val
echo DONE $name $seed
