"""
A small pre-norm Transformer encoder-decoder, written to be read top to bottom.

    src ids ──► token embedding ──► [EncoderBlock] x n_enc ──► LayerNorm ──► memory
                                     (self-attention + feed-forward)            │
                                                                                ▼
    tgt ids ──► token embedding ──► [DecoderBlock] x n_dec ──► LayerNorm ──► lm head ──► logits
                                     (causal self-attention + cross-attention + feed-forward)

Positions enter through rotary embeddings inside self-attention (see RotaryEmbedding).
Greedy decoding (EncoderDecoder.generate) keeps a key/value cache, and can let an outside
"calculator" object force tokens into the output. Checkpoints: checkpoint.py; the loss: cross_entropy.py.

This file knows nothing about the data it is trained on.
"""
import math
from collections import deque
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from cross_entropy import SoftmaxCrossEntropy


@dataclass
class ModelConfig:
    vocab_size: int = 4000  # size of the (shared) source/target vocabulary
    d_model: int = 256  # width of every residual stream
    n_heads: int = 4  # attention heads; d_model must be divisible by it
    n_enc_layers: int = 3  # EncoderBlocks stacked on the source (train.py's default too)
    n_dec_layers: int = 3  # DecoderBlocks stacked on the target
    d_ff: int = 1024  # hidden width of the feed-forward sublayer
    dropout: float = 0.1  # on embeddings and sublayer outputs (not on attention probs)
    max_src_len: int = 512  # longest source the model is asked to handle
    max_tgt_len: int = 512  # longest target incl. bos/eos
    tie_embeddings: bool = True  # lm head reuses the token embedding matrix
    pad_id: int = 0  # padding token: masked in attention, ignored in the loss (train.py passes the tokenizer's ids)
    bos_id: int = 2  # first decoder input
    eos_id: int = 3  # decoding of a sequence stops when it emits this


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE, Su et al. 2021), applied to queries and keys.

    Why rotary rather than learned or sinusoidal absolute positions:
    - no parameters, and nothing tied to a maximum length: the cos/sin tables are
      just a cache and grow on demand, so a source of 400 or a target of 600 works;
    - rotating q and k makes q.k depend only on the *distance* between two tokens,
      which is what a model copying numbers from a question mostly needs;
    - it suits a KV cache: a key is rotated once for its own position and never
      touched again, whatever position later queries have.
    Only self-attention is rotated. Cross-attention has no positions at all: target
    step t and source token s live on unrelated axes, so "distance" means nothing
    there; the encoder output already carries source positions in its content.

    Example: cos, sin = RotaryEmbedding(64, 512)(start=0, length=10)  # each (10, 64)
    """

    def __init__(self, head_dim, max_len, base=10000.0):
        super().__init__()
        assert head_dim % 2 == 0, "rotary pairs up channels, head_dim must be even"
        self.head_dim, self.base = head_dim, base
        self._build(max_len, device=None)

    def _build(self, length, device):
        half = self.head_dim // 2
        inv_freq = self.base ** (-torch.arange(half, dtype=torch.float32, device=device) / half)
        angles = torch.outer(torch.arange(length, dtype=torch.float32, device=device), inv_freq)
        # Channel i is paired with channel i + half. Folding the sign of the rotation into
        # the sin table lets apply_rotary use a single roll instead of split/negate/cat.
        cos = torch.cat([angles.cos(), angles.cos()], dim=-1)  # (L, Dh)
        sin = torch.cat([-angles.sin(), angles.sin()], dim=-1)  # (L, Dh)
        # persistent=False: tables are recomputed, never stored in checkpoints.
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, start, length):
        if start + length > self.cos.size(0):
            # Ordinary tensors even when called under generate's inference_mode: the tables
            # outlive that call, and training could not save inference tensors for backward.
            with torch.inference_mode(False):
                self._build(2 * (start + length), device=self.cos.device)
        return self.cos[start : start + length], self.sin[start : start + length]


def apply_rotary(x, cos, sin):
    """Rotate channel pairs (i, i + Dh/2) of x (..., T, Dh) by position-dependent angles.

    Example: q = apply_rotary(q, *rotary(0, q.size(-2)))
    """
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # no-op in fp32; keeps bf16/fp16 from upcasting
    return x * cos + x.roll(x.size(-1) // 2, dims=-1) * sin


class Linear(nn.Module):
    """A bias-free linear layer, y = x @ weight, with the weight stored (in, out): the transpose of
    nn.Linear's (out, in).

    Why: a cached decoding step multiplies one vector by every weight matrix, and its time is
    mostly the time to stream those matrices from memory. For a vector times a matrix stored
    (in, out), the CPU BLAS kernel streams about twice as fast as for nn.Linear's layout on the
    2-core CPU this project is measured on (301 vs 563 us for a 256 x 8000 matrix not in cache;
    bench.py's batch-1 decoding: 216 vs 288 ms per sample). Training matmuls (many rows at once)
    take the same time either way.

    Example: y = Linear(256, 1024)(torch.randn(2, 10, 256))  # (2, 10, 1024)
    """

    def __init__(self, d_in, d_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_in, d_out))

    def forward(self, x):
        return x @ self.weight


class MultiHeadAttention(nn.Module):
    """Multi-head attention in its three uses: encoder self-attention (padding mask),
    decoder causal self-attention (optionally with a KV cache), and cross-attention
    (queries from the decoder, keys/values from the encoder output).

    Attention probabilities get no dropout: on CPU, dropout inside
    F.scaled_dot_product_attention forces its slow "math" kernel (about 15x slower
    here); dropout on the sublayer output regularises at a fraction of the cost.
    """

    def __init__(self, d_model, n_heads, dropout, cross=False):
        super().__init__()
        assert d_model % n_heads == 0
        self.n_heads, self.cross = n_heads, cross
        # One matmul instead of three (or two) is the cheapest speed-up on CPU.
        # Bias-free: after a LayerNorm the biases add cost and almost nothing else.
        if cross:
            self.q = Linear(d_model, d_model)
            self.kv = Linear(d_model, 2 * d_model)
        else:
            self.qkv = Linear(d_model, 3 * d_model)
        self.proj = Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def split_heads(self, x, n):
        """(B, T, n*C) -> n tensors of shape (B, H, T, C/H), stacked on dim 0, no copy."""
        B, T, _ = x.shape
        return x.view(B, T, n, self.n_heads, -1).permute(2, 0, 3, 1, 4)

    def memory_kv(self, memory):
        """Cross-attention keys/values of the encoder output: (2, B, H, S, Dh)."""
        return self.split_heads(self.kv(memory), 2)

    def forward(self, x, mask=None, is_causal=False, rope=None, kv=None, cache=None, pos=0):
        B, T, C = x.shape
        if self.cross:
            q = self.q(x).view(B, T, self.n_heads, -1).transpose(1, 2)  # (B, H, T, Dh)
            k, v = kv  # (B, H, S, Dh) each, computed once per source by memory_kv
        else:
            qkv = self.split_heads(self.qkv(x), 3)  # (3, B, H, T, Dh)
            q, k = apply_rotary(qkv[:2], *rope)  # rotate queries and keys in one go
            v = qkv[2]
            if cache is not None:
                # Keys are stored already rotated, so step t only adds its own row.
                cache["k"][:, :, pos : pos + T] = k
                cache["v"][:, :, pos : pos + T] = v
                k, v = cache["k"][:, :, : pos + T], cache["v"][:, :, : pos + T]
        if torch.compiler.is_compiling():  # inductor's backward misjudges the strides of these views when lengths vary
            q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side again
        return self.dropout(self.proj(y))


class FeedForward(nn.Module):
    """Position-wise MLP. No dropout on the wide hidden layer: it would be the largest
    dropout in the network, and the output dropout is enough."""

    def __init__(self, d_model, d_ff, dropout):
        super().__init__()
        self.up = Linear(d_model, d_ff)
        self.down = Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.down(F.gelu(self.up(x))))


class EncoderBlock(nn.Module):
    """Pre-norm: normalise the input of each sublayer, keep the residual path clean,
    which trains stably without learning-rate warm-up tricks."""

    def __init__(self, cfg):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ff = FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout)

    def forward(self, x, mask, rope):
        x = x + self.attn(self.ln1(x), mask=mask, rope=rope)
        return x + self.ff(self.ln2(x))


class DecoderBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.cross_attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.dropout, cross=True)
        self.ln3 = nn.LayerNorm(cfg.d_model)
        self.ff = FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout)

    def forward(self, x, memory, memory_mask, rope, cache=None, pos=0):
        # Targets are right-padded, so the causal mask alone keeps real tokens away from
        # pads; is_causal lets SDPA skip building a (T, T) mask. A single cached step
        # (T == 1) may see every key in the cache, so it needs no mask at all.
        x = x + self.self_attn(self.ln1(x), is_causal=x.size(1) > 1, rope=rope, cache=cache, pos=pos)
        kv = cache["cross_kv"] if cache is not None else self.cross_attn.memory_kv(memory)
        x = x + self.cross_attn(self.ln2(x), mask=memory_mask, kv=kv)
        return x + self.ff(self.ln3(x))


class EncoderDecoder(nn.Module):
    """The whole model. Source and target share one vocabulary and one embedding matrix.

    Example:
        model = EncoderDecoder(ModelConfig(vocab_size=100, d_model=64, d_ff=256))
        logits, loss = model(src, tgt_in, targets)
    """

    def __init__(self, config):
        super().__init__()
        self.config = cfg = config
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.rotary = RotaryEmbedding(cfg.d_model // cfg.n_heads, max(cfg.max_src_len, cfg.max_tgt_len))
        self.drop = nn.Dropout(cfg.dropout)
        self.enc_blocks = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.n_enc_layers))
        self.enc_norm = nn.LayerNorm(cfg.d_model)  # pre-norm leaves the last output un-normalised
        self.dec_blocks = nn.ModuleList(DecoderBlock(cfg) for _ in range(cfg.n_dec_layers))
        self.dec_norm = nn.LayerNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight

        # GPT-2 style init; each residual branch's last matmul is scaled down by the number
        # of branches feeding that stream, so the stream's variance stays ~1 at any depth.
        self.apply(self._init_weights)
        for blocks, n_branches in ((self.enc_blocks, 2 * cfg.n_enc_layers), (self.dec_blocks, 3 * cfg.n_dec_layers)):
            for name, p in blocks.named_parameters():
                if name.endswith(("proj.weight", "down.weight")):
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(n_branches))
        print(f"EncoderDecoder: {self.num_params() / 1e6:.2f}M parameters, "
              f"{self.num_params(exclude_embeddings=True) / 1e6:.2f}M without embeddings")

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (Linear, nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, exclude_embeddings=False):
        """Parameter count (a tied matrix counts once). exclude_embeddings drops the
        vocabulary-sized matrices, leaving the size of the Transformer body.

        Example: model.num_params(exclude_embeddings=True)
        """
        n = sum(p.numel() for p in self.parameters())  # parameters() already de-duplicates
        if exclude_embeddings:
            n -= self.tok_emb.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.lm_head.weight.numel()
        return n

    def encode(self, src):
        """Source ids (B, S), pad_id marking padding -> memory (B, S, C).

        Example: memory = model.encode(src)
        """
        mask = (src != self.config.pad_id)[:, None, None, :]  # (B, 1, 1, S), True = attend
        x = self.drop(self.tok_emb(src))  # (B, S, C)
        rope = self.rotary(0, src.size(1))
        for block in self.enc_blocks:
            x = block(x, mask, rope)
        return self.enc_norm(x)

    def decode(self, tgt_in, memory, src_mask, cache=None):
        """Target inputs (B, T) attending to memory (B, S, C) -> hidden states (B, T, C).

        src_mask is (B, S) bool, True on real source tokens. Apply self.lm_head to get
        logits. With a cache (see init_cache) tgt_in holds only the new tokens, whose
        positions continue from cache["pos"].

        Example: logits = model.lm_head(model.decode(tgt_in, memory, src != pad_id))
        """
        pos = 0 if cache is None else cache["pos"]
        T = tgt_in.size(1)
        assert cache is None or pos == 0 or T == 1, "cached decoding feeds one token at a time"
        memory_mask = src_mask[:, None, None, :]  # (B, 1, 1, S)
        x = self.drop(self.tok_emb(tgt_in))  # (B, T, C)
        rope = self.rotary(pos, T)
        for i, block in enumerate(self.dec_blocks):
            layer_cache = None if cache is None else cache["layers"][i]
            x = block(x, memory, memory_mask, rope, cache=layer_cache, pos=pos)
        if cache is not None:
            cache["pos"] += T
        return self.dec_norm(x)

    def init_cache(self, memory, max_len):
        """Decoder KV cache for up to max_len target tokens.

        Self-attention buffers are preallocated (writing a row is cheaper than growing a
        tensor with torch.cat each step); cross-attention keys/values depend only on the
        source, so they are computed here once per layer and reused at every step.

        Example: cache = model.init_cache(model.encode(src), max_len=128)
        """
        B, S, C = memory.shape
        H = self.config.n_heads
        layers = []
        for block in self.dec_blocks:
            layers.append({
                "k": memory.new_empty(B, H, max_len, C // H),
                "v": memory.new_empty(B, H, max_len, C // H),
                "cross_kv": block.cross_attn.memory_kv(memory),
            })
        return {"pos": 0, "layers": layers}

    def forward(self, src, tgt_in, targets=None):
        """Teacher-forced pass.

        src (B, S), tgt_in (B, T) starting with bos, targets (B, T) with pad_id where no
        loss is wanted. tgt_in must be right-padded (pads only after the real tokens).
        Returns (logits, loss):
        - targets None: logits (B, T, V), loss None.
        - targets given: loss is the mean cross-entropy over non-pad targets, and, to save
          the vocabulary matmul on padding, logits are only those rows: shape (N, V), in
          the order of targets[targets != pad_id].

        Example: logits, loss = model(src, tgt_in, targets); loss.backward()
        """
        src_mask = src != self.config.pad_id
        h = self.decode(tgt_in, self.encode(src), src_mask)  # (B, T, C)
        if targets is None:
            return self.lm_head(h), None
        keep = targets != self.config.pad_id  # (B, T)
        logits = self.lm_head(h[keep])  # (N, V)
        return logits, SoftmaxCrossEntropy.apply(logits, targets[keep])

    @torch.inference_mode()  # no_grad minus view/version tracking: batch-1 steps a few % faster
    def generate(self, src, max_new_tokens, use_cache=True, calculator=None, prefix=()):
        """Batched greedy decoding. Returns, per source row, the generated ids without
        bos, prefix and the final eos. A row stops at its own eos; the loop stops when
        every row has, or after max_new_tokens tokens after the prefix. Runs in eval mode
        (restored after).

        prefix (optional): ids every row's output is forced to start with, e.g. a task token
        that tells a multi-task model which task to do.

        calculator (optional) has .trigger_ids (set of ids) and is called as
        calculator(tokens_so_far) -> list of ids. When a row's greedy token is a trigger,
        the returned ids are forced into that row on the next steps instead of its argmax.
        The forced token is the next decoder input, so the cache stays consistent.

        use_cache=False re-runs the decoder on the whole prefix each step (slow; a check).

        Example: ids = model.generate(src, max_new_tokens=256)  # list of B lists of ints
        """
        cfg = self.config
        was_training = self.training
        self.eval()  # dropout would make each step random and break cache equivalence
        try:
            B = src.size(0)
            src_mask = src != cfg.pad_id
            memory = self.encode(src)  # (B, S, C), encoded once
            head = self.lm_head.weight.t().contiguous()  # (C, V): the layout Linear explains, made once per call
            steps = len(prefix) + max_new_tokens
            cache = self.init_cache(memory, steps) if use_cache else None
            tokens = torch.full((B, steps + 1), cfg.pad_id, dtype=torch.long, device=src.device)
            tokens[:, 0] = cfg.bos_id
            done = torch.zeros(B, dtype=torch.bool, device=src.device)
            queues = [deque() for _ in range(B)]  # forced tokens waiting, per row
            for t in range(steps):
                tgt_in = tokens[:, t : t + 1] if use_cache else tokens[:, : t + 1]
                h = self.decode(tgt_in, memory, src_mask, cache)
                next_tok = (h[:, -1] @ head).argmax(dim=-1)  # (B,) the logits are lm_head's
                if t < len(prefix):
                    next_tok.fill_(prefix[t])
                elif calculator is not None:
                    next_tok = self._calculator_step(next_tok, tokens[:, 1 + len(prefix) : t + 1], done, queues, calculator)
                next_tok.masked_fill_(done, cfg.pad_id)  # finished rows just idle along
                tokens[:, t + 1] = next_tok
                done |= next_tok == cfg.eos_id
                if done.all():
                    break
        finally:
            self.train(was_training)
        out = []
        for row in tokens[:, 1 + len(prefix):].tolist():
            out.append(row[: row.index(cfg.eos_id)] if cfg.eos_id in row else row)
        return out

    @staticmethod
    def _calculator_step(next_tok, generated, done, queues, calculator):
        """Replace greedy choices by queued forced tokens; queue new ones on triggers."""
        chosen, finished = next_tok.tolist(), done.tolist()
        for b, tok in enumerate(chosen):
            if finished[b]:
                continue
            if queues[b]:
                chosen[b] = queues[b].popleft()  # forced tokens never re-trigger
            elif tok in calculator.trigger_ids:
                queues[b].extend(calculator(generated[b].tolist() + [tok]))
        return torch.tensor(chosen, dtype=next_tok.dtype, device=next_tok.device)


def generate_many(model, sources, max_new_tokens, batch_size=64, calculator=None, device=None, prefix=(), on_batch=None):
    """Greedy-decode a list of token-id sources in batches of similar length (less padding,
    rows finish together), returning the outputs in the original order (prefix: see generate);
    on_batch(done, total), if given, is called after each batch (a progress line, say).

    Example: outs = generate_many(model, [[5, 6, 7], [8, 9]], max_new_tokens=64)
    """
    device = device or next(model.parameters()).device
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    outs = [None] * len(sources)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        S = max(len(sources[i]) for i in idx)
        src = torch.full((len(idx), S), model.config.pad_id, dtype=torch.long)
        for row, i in enumerate(idx):
            src[row, :len(sources[i])] = torch.tensor(sources[i], dtype=torch.long)
        for i, out in zip(idx, model.generate(src.to(device), max_new_tokens, calculator=calculator, prefix=prefix)):
            outs[i] = out
        if on_batch:
            on_batch(start + len(idx), len(sources))
    return outs
