#!/usr/bin/env python3
"""PyTorch reference implementations of attnrec's `base` and `din` models.

Written the way the PyTorch CTR libraries write them (DeepCTR-Torch's DIN: the activation unit
is an MLP over the concatenated [q, k, q - k, q * k], the history pooled by the raw weights; the
base model mean-pools), from attnrec's run folders: config.toml for the architecture,
model.safetensors for the weights (read here without the safetensors package: an 8-byte header
length, a JSON header, raw little-endian tensors).

    python benchmarks/reference/attnrec_ref.py parity RUN EXAMPLE.npz [--tol 1e-5]

loads RUN's weights into the reference model and runs the batches of EXAMPLE.npz (written by
`attnrec export`, with attnrec's logits for them) through it; exit status 0 when every logit
matches to --tol. This is the architecture check of the performance comparison: with identical
weights and batches the two implementations compute the same function.
"""
import argparse
import json
import pathlib
import struct
import sys
import tomllib

import numpy as np
import torch
from torch import nn

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64}


def read_safetensors(path):
    """{name: tensor} of a .safetensors file."""
    raw = pathlib.Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        a = np.frombuffer(raw[base + start : base + end], dtype=DTYPES[meta["dtype"]]).reshape(meta["shape"])
        out[name] = torch.from_numpy(a.copy())
    return out


class PReLU(nn.Module):
    """Per-unit PReLU on the last dim (torch.nn.PReLU uses dim 1)."""

    def __init__(self, units):
        super().__init__()
        self.slope = nn.Parameter(torch.full((units,), 0.25))

    def forward(self, x):
        return torch.where(x > 0, x, self.slope * x)


class Mlp(nn.Module):
    """Linear -> PReLU per hidden layer; checkpoint keys layerI.linear.*, layerI.act.slope."""

    def __init__(self, in_dim, hidden):
        super().__init__()
        layers = []
        for h in hidden:
            layers.append(nn.ModuleDict({"linear": nn.Linear(in_dim, h), "act": PReLU(h)}))
            in_dim = h
        self.layers = nn.ModuleList(layers)
        self.out_dim = in_dim

    def forward(self, x):
        for layer in self.layers:
            x = layer["act"](layer["linear"](x))
        return x

    def load(self, weights, prefix):
        for i, layer in enumerate(self.layers):
            layer["linear"].weight.data.copy_(weights.pop(f"{prefix}layer{i}.linear.weight"))
            layer["linear"].bias.data.copy_(weights.pop(f"{prefix}layer{i}.linear.bias"))
            layer["act"].slope.data.copy_(weights.pop(f"{prefix}layer{i}.act.slope"))


class Embeddings(nn.Module):
    def __init__(self, n_users, n_items, n_genres, dim):
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        self.genre = nn.Embedding(n_genres, dim)

    def load(self, weights):
        for name in ("user", "item", "genre"):
            getattr(self, name).weight.data.copy_(weights.pop(f"emb.{name}.weight"))

    def target(self, item, genre):
        return torch.cat([self.item(item), self.genre(genre)], -1)

    def history(self, hist_item, hist_genre):
        return torch.cat([self.item(hist_item), self.genre(hist_genre)], -1)


class Base(nn.Module):
    """DIN paper's BaseModel: mean pooling of the history, MLP on [user, target, pooled]."""

    def __init__(self, emb, hidden):
        super().__init__()
        self.emb = emb
        d = emb.item.embedding_dim
        self.mlp = Mlp(d + 4 * d, hidden)
        self.out = nn.Linear(self.mlp.out_dim, 1)

    def forward(self, user, item, genre, hist_item, hist_genre, hist_mask):
        hist = self.emb.history(hist_item, hist_genre)
        m = hist_mask.to(hist.dtype)
        pooled = (hist * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp_min(1.0)
        x = torch.cat([self.emb.user(user), self.emb.target(item, genre), pooled], -1)
        return self.out(self.mlp(x)).squeeze(-1)


class Din(nn.Module):
    """DIN: the activation unit scores each history event against the target, unnormalized."""

    def __init__(self, emb, unit_hidden, hidden):
        super().__init__()
        self.emb = emb
        d = 2 * emb.item.embedding_dim
        self.unit = Mlp(4 * d, unit_hidden)
        self.unit_out = nn.Linear(self.unit.out_dim, 1)
        self.mlp = Mlp(emb.user.embedding_dim + 2 * d, hidden)
        self.out = nn.Linear(self.mlp.out_dim, 1)

    def forward(self, user, item, genre, hist_item, hist_genre, hist_mask):
        q = self.emb.target(item, genre)
        keys = self.emb.history(hist_item, hist_genre)
        qe = q.unsqueeze(1).expand_as(keys)
        scores = self.unit_out(self.unit(torch.cat([qe, keys, qe - keys, qe * keys], -1))).squeeze(-1)
        weights = scores.masked_fill(~hist_mask, 0.0)
        interest = torch.bmm(weights.unsqueeze(1), keys).squeeze(1)
        x = torch.cat([self.emb.user(user), q, interest], -1)
        return self.out(self.mlp(x)).squeeze(-1)


def build(run):
    """The reference model of the run folder `run`, with its weights."""
    run = pathlib.Path(run)
    cfg = tomllib.loads((run / "config.toml").read_text())
    proto = cfg.get("protocol", {})
    if proto.get("time_gap") or proto.get("user_features") or proto.get("item_features"):
        raise SystemExit("attnrec_ref: only runs without time gaps or side features have a reference")
    model_cfg = cfg["model"]
    kind = model_cfg["kind"]
    mlp = model_cfg.get("mlp", {})
    if mlp.get("activation", "prelu") != "prelu" or mlp.get("batch_norm", False):
        raise SystemExit("attnrec_ref: the reference MLP is PReLU without batch norm")
    weights = read_safetensors(run / "model.safetensors")
    dim = model_cfg.get("embed_dim", 16)
    emb = Embeddings(weights["emb.user.weight"].shape[0], weights["emb.item.weight"].shape[0], weights["emb.genre.weight"].shape[0], dim)
    hidden = mlp.get("hidden", [200, 80])
    if kind == "base":
        model = Base(emb, hidden)
    elif kind == "din":
        att = model_cfg.get("attention", {})
        score = att.get("score", {})
        if score.get("kind") != "din_mlp" or att.get("align", "none") != "none" or score.get("activation", "prelu") != "prelu" or att.get("heads", 1) != 1:
            raise SystemExit("attnrec_ref: the reference DIN is the default one (din_mlp score, PReLU, no normalization, one head)")
        model = Din(emb, score.get("hidden", [80, 40]), hidden)
    else:
        raise SystemExit(f"attnrec_ref: no reference for model '{kind}' (base, din)")
    emb.load(weights)
    if kind == "din":
        model.unit.load(weights, "target_attn.score.mlp.")
        model.unit_out.weight.data.copy_(weights.pop("target_attn.score.out.weight"))
        model.unit_out.bias.data.copy_(weights.pop("target_attn.score.out.bias"))
    model.mlp.load(weights, "mlp.")
    model.out.weight.data.copy_(weights.pop("out.weight"))
    model.out.bias.data.copy_(weights.pop("out.bias"))
    if weights:
        raise SystemExit(f"attnrec_ref: parameters the reference does not use: {sorted(weights)}")
    return model.eval()


def parity(args):
    model = build(args.run)
    example = np.load(args.example)
    worst = 0.0
    k = 1
    while f"batch{k}.user" in example:
        t = lambda name: torch.from_numpy(example[f"batch{k}.{name}"])
        with torch.no_grad():
            got = model(t("user"), t("item"), t("genre"), t("hist_item"), t("hist_genre"), t("hist_mask").bool())
        want = t("logit")
        diff = (got - want).abs().max().item()
        worst = max(worst, diff)
        print(f"batch{k}: {got.shape[0]} rows, max |reference - attnrec| logit = {diff:.3g}")
        if not diff <= args.tol:
            print(f"attnrec_ref: FAIL: batch{k}: logits differ by {diff:.3g} > {args.tol:g}", file=sys.stderr)
            sys.exit(1)
        k += 1
    if k == 1:
        raise SystemExit("attnrec_ref: the example file holds no batches")
    print(f"attnrec_ref parity: OK ({type(model).__name__}, torch {torch.__version__}, max logit diff {worst:.3g} <= {args.tol:g})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("parity", help="the reference's logits against attnrec's on exported example batches")
    p.add_argument("run", type=pathlib.Path)
    p.add_argument("example", type=pathlib.Path)
    p.add_argument("--tol", type=float, default=1e-5)
    args = ap.parse_args()
    {"parity": parity}[args.cmd](args)


if __name__ == "__main__":
    main()
