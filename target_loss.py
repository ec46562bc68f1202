"""
target_loss: how well a student knows the reference solution of a problem, as the mean per-token
cross-entropy of the reference target under teacher forcing. Exact match on stories a student never
saw sits at its floor and cannot show a trend; this measure is continuous, so it can (story_scaling.py
fits it against the number of train stories). Serves evaluate.py, which puts it into eval.json
beside exact match and into every predictions row.

The target is built as training builds it (examples.py): the run's mode, trace format and task
prefixes. With --mask-results the student never learned to write the results the calculator writes,
so target_loss leaves them out as its loss did; target_loss_all_tokens counts every token.

Example:
    trained, every = target_losses(model, tok, load_problems("val"), "cot", ckpt["train_config"])
"""
from dataclasses import replace

import torch
import torch.nn.functional as F

import data
from examples import FILLER_TOKENS, make_examples
from traces import equations_only


def reference_examples(tok, problems, mode, train_config, mask):
    """
    Each problem's reference target as the run trained on targets, as (task, Example) pairs:
    problems are (id, question, gold, reference trace or None) rows (evaluate.load_problems); one
    with no reference trace gives none in a reasoning mode. mask: leave out the calculator's results.
    Example: reference_examples(tok, load_problems("val"), "cot", {"trace_format": "equations"}, True)
    """
    trace_format = train_config.get("trace_format", "equations")
    shaped = equations_only if trace_format == "equations" else (lambda trace: trace)
    refs = {pid: [shaped(ref)] for pid, _, _, ref in problems if ref}
    as_problems = [data.Problem(pid, question, "", gold) for pid, question, gold, _ in problems]
    return make_examples(as_problems, refs, mode, tok, train_config.get("seed", 1337), FILLER_TOKENS[trace_format], mask)


def target_nll(model, tok, pairs, batch_tokens=4096):
    """
    Teacher-forced cross-entropy of every (task, Example) pair's target (eos included), from one
    forward pass: {(example id, task): ((nats, tokens) over the positions the loss trains, i.e. all
    but ex.no_loss, (nats, tokens) over every position)}.
    Example: trained, every = target_nll(model, tok, reference_examples(tok, problems, "cot", cfg, True))[("val-00001", "cot")]
    """
    device = next(model.parameters()).device
    examples = [ex for _, ex in pairs]
    out = {}
    model.eval()
    with torch.no_grad():
        for batch in data.token_batches(examples, batch_tokens, shuffle=False):
            rows = [examples[i] for i in batch]
            # every target token scored: the mask is applied below, so one pass gives both sums
            src, tgt_in, targets = (t.to(device) for t in data.collate([replace(ex, no_loss=[]) for ex in rows]))
            logits, _ = model(src, tgt_in)
            nll = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=tok.pad_id, reduction="none").cpu()
            for row, (i, ex) in enumerate(zip(batch, rows)):
                every = nll[row, :len(ex.tgt) + 1]
                trained = torch.ones(len(every), dtype=torch.bool)
                trained[ex.no_loss] = False
                out[(ex.id, pairs[i][0])] = ((float(every[trained].sum()), int(trained.sum())), (float(every.sum()), len(every)))
    return out


def target_losses(model, tok, problems, mode, train_config):
    """
    The reference targets' losses per (problem id, task) as (nats, tokens): over the tokens the
    run's own loss trains (its calculator-aware mask applied), and over every target token.
    Example: trained, every = target_losses(model, tok, problems, "cot", ckpt["train_config"])
    """
    nll = target_nll(model, tok, reference_examples(tok, problems, mode, train_config, bool(train_config.get("mask_results"))))
    return {k: v[0] for k, v in nll.items()}, {k: v[1] for k, v in nll.items()}


def mean_loss(pairs):
    """Total nats over total tokens of (nats, tokens) pairs, or None if there are none."""
    tokens = sum(n for _, n in pairs)
    return sum(s for s, _ in pairs) / tokens if tokens else None


def add_target_loss(metrics, rows, losses, task):
    """
    Put the losses of one task's targets into its metrics (the means over the set) and into its
    predictions rows (per problem, so a bootstrap over problems can recompute them).
    Example: add_target_loss(m, rows, target_losses(model, tok, problems, "cot", cfg), "cot")
    """
    trained, every = losses
    for r in rows:
        r["target_nats"], r["target_tokens"] = trained.get((r["id"], task), (None, 0))
        r["target_nats_all_tokens"], r["target_tokens_all"] = every.get((r["id"], task), (None, 0))
    mine = [v for (_, t), v in trained.items() if t == task]
    metrics.update({"target_loss": mean_loss(mine), "target_loss_all_tokens": mean_loss([v for (_, t), v in every.items() if t == task]),
                    "target_tokens": sum(n for _, n in mine), "target_problems": len(mine)})
