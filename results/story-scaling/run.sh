#!/usr/bin/env bash
# The story-scaling curve of RESULTS.md ("Story scaling"), run from the repository root:
#   bash results/story-scaling/run.sh MODE SEED N...
# trains MODE on N train stories (train.py --stories), K = 16 variants, 4,000 steps of the CPU recipe,
# then scores last.pt on val, test and the seen-stories rows whose story is among the N.
set -u
mode=$1; seed=$2; shift 2
extra=(); calc=()
if [ "$mode" = cot ]; then extra=(--mask-results); calc=(--calculator); fi
for n in "$@"; do
  out=runs/curve/$mode-n$n-s$seed
  python train.py --mode $mode --stories $n --variants 16 --steps 4000 --seed $seed --d-model 128 --n-heads 4 --d-ff 512 \
    --batch-tokens 2048 --lr 2e-3 --warmup-steps 200 --eval-interval 2000 --test-limit 50 "${extra[@]}" --out $out
  python - "$n" runs/curve/seen-n$n.jsonl <<'PY'
import json, sys
import data
n, out = int(sys.argv[1]), sys.argv[2]
stories = {p.id for p in data.nested_stories(data.load_gsm8k("train"), n)}
rows = [r for r in data.read_jsonl("results/seen-stories/seen-stories.jsonl") if r["story"] in stories]
open(out, "w").write("".join(json.dumps(r) + "\n" for r in rows))
PY
  python evaluate.py $out/last.pt --split val "${calc[@]}" --latency-samples 0 --out $out/eval-val
  python evaluate.py $out/last.pt --split test "${calc[@]}" --latency-samples 0 --out $out/eval-test
  python evaluate.py $out/last.pt --eval-file runs/curve/seen-n$n.jsonl "${calc[@]}" --latency-samples 0 --out $out/eval-seen
done
