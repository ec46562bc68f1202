"""
The training loss of model.py: SoftmaxCrossEntropy, F.cross_entropy's value and gradient with
the gradient written into the one (N, V) buffer the forward pass keeps, kept because it makes a
training step at a vocabulary of thousands about 1.3x faster on CPU (the smoke preset's step).
"""
import torch


class SoftmaxCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of logits (N, V) against target ids (N,): F.cross_entropy's value and
    gradient, with the gradient written into the one (N, V) buffer the forward pass keeps.

    Why: the gradient of softmax cross-entropy is just (softmax - one_hot) / N, but
    F.cross_entropy's backward gets there through two more (N, V) tensors (a zero-filled
    one-hot gradient, then log_softmax's gradient). At a vocabulary of 8000 those are the
    largest tensors of a training step; skipping them makes the smoke preset's step about
    1.3x faster on CPU and the default's a few percent.

    Example: loss = SoftmaxCrossEntropy.apply(logits, targets)
    """

    @staticmethod
    def forward(ctx, logits, targets):
        # At least fp32: under bf16 autocast F.cross_entropy upcasts too.
        logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
        ctx.save_for_backward(logp, targets)
        return -logp.gather(1, targets[:, None]).mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        logp, targets = ctx.saved_tensors
        # In place: logp is not needed again (a second backward through this graph is refused by
        # autograd's check that saved tensors were not modified).
        g = logp.exp_()  # softmax
        g[torch.arange(len(targets), device=g.device), targets] -= 1
        return g.mul_(grad / len(targets)), None
