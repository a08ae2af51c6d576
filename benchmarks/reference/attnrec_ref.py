#!/usr/bin/env python3
"""PyTorch reference implementations of attnrec's `base`, `din`, `bst` and `din_sa` models.

Written the way the PyTorch CTR libraries write them (DeepCTR-Torch's DIN: the activation unit
is an MLP over the concatenated [q, k, q - k, q * k], the history pooled by the raw weights; the
base model mean-pools; BST is torch.nn.TransformerEncoderLayer over [history, target] with
recency position embeddings, as RecBole and FuxiCTR build it; din_sa the same encoder over the
history alone, then DIN's unit with softmax), from attnrec's run folders: config.toml for the architecture,
model.safetensors for the weights (read here without the safetensors package: an 8-byte header
length, a JSON header, raw little-endian tensors).

    python benchmarks/reference/attnrec_ref.py parity RUN EXAMPLE.npz [--tol 1e-5]
    python benchmarks/reference/attnrec_ref.py train CACHE --model din [--epochs 10] [--seed 42]
    python benchmarks/reference/attnrec_ref.py bench CACHE --model din [--batch-sizes 256,1024,4096]
    python benchmarks/reference/attnrec_ref.py prepare DATA --out DIR
    python benchmarks/reference/attnrec_ref.py score RUN DATA CANDIDATES.csv --out SCORES.csv

`prepare` and `score` are the data side of the comparison, written the way a pandas user writes
them: `prepare` turns an ml-1m-format log into attnrec's samples.parquet (the default protocol:
labels, per-user time order, 80/10/10 split, train vocabularies; the same columns and values as
`attnrec data prepare`), `score` scores a CSV of (user_id, item_id) pairs with a run's weights and
each user's last L logged events as the history.

loads RUN's weights into the reference model and runs the batches of EXAMPLE.npz (written by
`attnrec export`, with attnrec's logits for them) through it; exit status 0 when every logit
matches to --tol. This is the architecture check of the performance comparison: with identical
weights and batches the two implementations compute the same function.
"""
import argparse
import json
import time
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
    """attnrec's shared tables; with `feedback`, each history event's own label (0 = padding,
    1 = no click, 2 = click, 3 = the sample's own timestamp: not yet known) has an embedding as wide
    as an item, added to the event."""

    def __init__(self, n_users, n_items, n_genres, dim, feedback=False):
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        self.genre = nn.Embedding(n_genres, dim)
        self.feedback = nn.Embedding(4, 2 * dim) if feedback else None

    def tables(self):
        return [self.user, self.item, self.genre] + ([self.feedback] if self.feedback is not None else [])

    def load(self, weights):
        for name in ("user", "item", "genre") + (("feedback",) if self.feedback is not None else ()):
            getattr(self, name).weight.data.copy_(weights.pop(f"emb.{name}.weight"))

    def target(self, item, genre):
        return torch.cat([self.item(item), self.genre(genre)], -1)

    def history(self, hist_item, hist_genre, hist_feedback=None):
        h = torch.cat([self.item(hist_item), self.genre(hist_genre)], -1)
        return h + self.feedback(hist_feedback) if self.feedback is not None else h


class Base(nn.Module):
    """DIN paper's BaseModel: mean pooling of the history, MLP on [user, target, pooled]."""

    def __init__(self, emb, hidden):
        super().__init__()
        self.emb = emb
        d = emb.item.embedding_dim
        self.mlp = Mlp(d + 4 * d, hidden)
        self.out = nn.Linear(self.mlp.out_dim, 1)

    def forward(self, user, item, genre, hist_item, hist_genre, hist_mask, hist_feedback=None):
        hist = self.emb.history(hist_item, hist_genre, hist_feedback)
        m = hist_mask.to(hist.dtype)
        pooled = (hist * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp_min(1.0)
        x = torch.cat([self.emb.user(user), self.emb.target(item, genre), pooled], -1)
        return self.out(self.mlp(x)).squeeze(-1)


class Din(nn.Module):
    """DIN: the activation unit scores each history event against the target, unnormalized (or,
    with `softmax`, normalized over the present events)."""

    def __init__(self, emb, unit_hidden, hidden, softmax=False):
        super().__init__()
        self.emb = emb
        self.softmax = softmax
        d = 2 * emb.item.embedding_dim
        self.unit = Mlp(4 * d, unit_hidden)
        self.unit_out = nn.Linear(self.unit.out_dim, 1)
        self.mlp = Mlp(emb.user.embedding_dim + 2 * d, hidden)
        self.out = nn.Linear(self.mlp.out_dim, 1)

    def encode(self, keys, hist_mask):
        """The history as the unit sees it: the embeddings themselves here."""
        return keys

    def forward(self, user, item, genre, hist_item, hist_genre, hist_mask, hist_feedback=None):
        q = self.emb.target(item, genre)
        keys = self.encode(self.emb.history(hist_item, hist_genre, hist_feedback), hist_mask)
        qe = q.unsqueeze(1).expand_as(keys)
        scores = self.unit_out(self.unit(torch.cat([qe, keys, qe - keys, qe * keys], -1))).squeeze(-1)
        if self.softmax:
            weights = scores.masked_fill(~hist_mask, -1e30).softmax(-1).masked_fill(~hist_mask, 0.0)
        else:
            weights = scores.masked_fill(~hist_mask, 0.0)
        interest = torch.bmm(weights.unsqueeze(1), keys).squeeze(1)
        x = torch.cat([self.emb.user(user), q, interest], -1)
        return self.out(self.mlp(x)).squeeze(-1)


class Bst(nn.Module):
    """BST: the target appended to the history, recency positions added (1 = the most recent event,
    0 = the target and padding), torch's Transformer encoder layer with the padding masked out, and
    an MLP on [user, target, encoded target, masked mean of the encoded history]."""

    def __init__(self, emb, hidden, history_len, heads=2, ffn=None, blocks=1, dropout=0.1, positions=True):
        super().__init__()
        self.emb = emb
        d = 2 * emb.item.embedding_dim
        self.positions, self.blocks = encoder_layers(d, history_len, heads, ffn, blocks, dropout, positions)
        self.mlp = Mlp(emb.user.embedding_dim + 3 * d, hidden)
        self.out = nn.Linear(self.mlp.out_dim, 1)

    def forward(self, user, item, genre, hist_item, hist_genre, hist_mask, hist_feedback=None):
        n, length = hist_mask.shape
        target = self.emb.target(item, genre)
        h = torch.cat([self.emb.history(hist_item, hist_genre, hist_feedback), target.unsqueeze(1)], 1)
        mask = torch.cat([hist_mask, torch.ones(n, 1, dtype=torch.bool, device=hist_mask.device)], 1)
        if self.positions is not None:
            pos = torch.cat([history_positions(hist_mask), torch.zeros(n, 1, dtype=torch.long, device=hist_mask.device)], 1)
            h = h + self.positions(pos)
        for block in self.blocks:
            h = block(h, src_key_padding_mask=~mask)
        hm = hist_mask.to(h.dtype)
        pooled = (h[:, :length] * hm.unsqueeze(-1)).sum(1) / hm.sum(1, keepdim=True).clamp_min(1.0)
        x = torch.cat([self.emb.user(user), target, h[:, length], pooled], -1)
        return self.out(self.mlp(x)).squeeze(-1)

    def load(self, weights):
        load_encoder(self.positions, self.blocks, weights)


def encoder_layers(d, history_len, heads, ffn, blocks, dropout, positions):
    """attnrec's history encoder: recency position embeddings N(0, 0.01²) (index 0 for the target
    and padding) and post-norm Transformer encoder layers with a LeakyReLU (0.01) feed-forward."""
    table = nn.Embedding(history_len + 1, d) if positions else None
    if positions:
        nn.init.normal_(table.weight, 0.0, 0.01)
    leaky = lambda x: nn.functional.leaky_relu(x, 0.01)
    layers = nn.ModuleList(
        nn.TransformerEncoderLayer(d, heads, ffn or 4 * d, dropout, activation=leaky, batch_first=True, norm_first=False)
        for _ in range(blocks)
    )
    return table, layers


def history_positions(hist_mask):
    """Each present event's recency + 1 (1 = the most recent), 0 at padding."""
    m = hist_mask.long()
    recency = (m.flip(-1).cumsum(-1).flip(-1) - 1).clamp_min(0) * m
    return (recency + 1) * m


def load_encoder(positions, blocks, weights):
    """An attnrec encoder's weights (`encoder.positions`, `encoder.blockI.attn.{q,k,v,o}`, `ff1`,
    `ff2`, `norm1`, `norm2`) into the position table and torch's encoder layers."""
    if positions is not None:
        positions.weight.data.copy_(weights.pop("encoder.positions.weight"))
    for i, block in enumerate(blocks):
        p = f"encoder.block{i}."
        take = lambda name: weights.pop(p + name)
        attn = block.self_attn
        attn.in_proj_weight.data.copy_(torch.cat([take(f"attn.{x}.weight") for x in "qkv"]))
        attn.in_proj_bias.data.copy_(torch.cat([take(f"attn.{x}.bias") for x in "qkv"]))
        attn.out_proj.weight.data.copy_(take("attn.o.weight"))
        attn.out_proj.bias.data.copy_(take("attn.o.bias"))
        for ours, theirs in (("ff1", block.linear1), ("ff2", block.linear2), ("norm1", block.norm1), ("norm2", block.norm2)):
            theirs.weight.data.copy_(take(f"{ours}.weight"))
            theirs.bias.data.copy_(take(f"{ours}.bias"))


class DinSa(Din):
    """DIN over a self-attention encoding of the history: recency positions added (1 = the most
    recent event, 0 at padding), torch's Transformer encoder layers over the history alone with the
    padding masked out, then DIN's activation unit scores each encoded event against the target,
    softmax over the present events, and an MLP on [user, target, interest]."""

    def __init__(self, emb, unit_hidden, hidden, history_len, heads=2, ffn=None, blocks=1, dropout=0.1, positions=True):
        super().__init__(emb, unit_hidden, hidden, softmax=True)
        d = 2 * emb.item.embedding_dim
        self.positions, self.blocks = encoder_layers(d, history_len, heads, ffn, blocks, dropout, positions)

    def encode(self, h, hist_mask):
        if self.positions is not None:
            h = h + self.positions(history_positions(hist_mask))
        # torch's attention over a row without any present event is NaN (attnrec's is finite);
        # such a row's interest is zero either way, its weights being, so it attends to all here.
        attend = hist_mask | ~hist_mask.any(1, keepdim=True)
        for block in self.blocks:
            h = block(h, src_key_padding_mask=~attend)
        return h

    def load(self, weights):
        load_encoder(self.positions, self.blocks, weights)


def fresh(kind, n_users, n_items, n_genres, dim=16, history_len=50, feedback=False):
    """A reference model at attnrec's defaults and initialization: embeddings N(0, 0.01²) with a
    zero, frozen padding row 0; linear layers at PyTorch's default (as tch's); PReLU slopes 0.25."""
    emb = Embeddings(n_users, n_items, n_genres, dim, feedback)
    for e in emb.tables():
        nn.init.normal_(e.weight, 0.0, 0.01)
        e.padding_idx = 0
        with torch.no_grad():
            e.weight[0].zero_()
    if kind == "base":
        return Base(emb, [200, 80])
    if kind == "din":
        return Din(emb, [80, 40], [200, 80])
    if kind == "bst":
        return Bst(emb, [200, 80], history_len)
    if kind == "din_sa":
        return DinSa(emb, [80, 40], [200, 80], history_len)
    raise SystemExit(f"attnrec_ref: no reference for model '{kind}' (base, din, bst, din_sa)")


class Samples:
    """attnrec's prepared samples (CACHE/samples.parquet, written by `attnrec data prepare`), with
    each sample's history as attnrec builds it: the last L of its user's earlier events
    (`user_start .. history_end` in protocol order), right-aligned."""

    def __init__(self, cache, history_len=50):
        import pyarrow.parquet as pq

        t = pq.read_table(pathlib.Path(cache) / "samples.parquet").to_pydict()
        col = lambda n, d: np.asarray(t[n], dtype=d)
        self.user, self.item, self.genre = col("user_idx", np.int64), col("item_idx", np.int64), col("genre_idx", np.int64)
        self.label = col("label", np.float32)
        self.split = col("split", np.int32)
        self.raw_user = col("user_id", np.int64)
        self.timestamp = col("timestamp", np.int64)
        self.user_start, self.history_end = col("user_start", np.int64), col("history_end", np.int64)
        fm = json.loads((pathlib.Path(cache) / "feature_map.json").read_text())
        self.history_len = fm.get("history_len", history_len)
        self.feedback = fm.get("history_feedback", False)
        # Vocabularies list the train ids; index 0 is padding, 1 out-of-vocabulary.
        self.sizes = tuple(len(fm[k]) + 2 for k in ("user", "item", "genre"))

    def indices(self, split):
        return np.nonzero(self.split == split)[0]

    def batch(self, idx):
        L = self.history_len
        pos = self.history_end[idx, None] - L + np.arange(L)[None, :]
        mask = pos >= self.user_start[idx, None]
        pos = np.where(mask, pos, 0)
        hist_item = np.where(mask, self.item[pos], 0)
        hist_genre = np.where(mask, self.genre[pos], 0)
        tt = torch.from_numpy
        x = (tt(self.user[idx]), tt(self.item[idx]), tt(self.genre[idx]), tt(hist_item), tt(hist_genre), tt(mask))
        if self.feedback:
            known = self.timestamp[pos] < self.timestamp[idx, None]
            x += (tt(np.where(mask, np.where(known, np.where(self.label[pos] > 0.5, 2, 1), 3), 0).astype(np.int64)),)
        return x, tt(self.label[idx])


def predict(model, data, idx, batch_size=4096):
    out = []
    with torch.no_grad():
        for s in range(0, len(idx), batch_size):
            x, _ = data.batch(idx[s : s + batch_size])
            out.append(torch.sigmoid(model(*x)))
    return torch.cat(out).numpy()


def gauc(users, labels, probs):
    """Impression-weighted per-user AUC over users with both classes (as attnrec's GAUC)."""
    from sklearn.metrics import roc_auc_score

    total, weight = 0.0, 0
    order = np.argsort(users, kind="stable")
    u, l, p = users[order], labels[order], probs[order]
    bounds = np.flatnonzero(np.diff(u)) + 1
    for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(u)]):
        if 0 < l[a:b].sum() < b - a:
            total += roc_auc_score(l[a:b], p[a:b]) * (b - a)
            weight += b - a
    return total / max(weight, 1)


def train(args):
    """attnrec's training loop in PyTorch: Adam, BCE with logits, shuffled batches, valid AUC each
    epoch, the best epoch's weights, early stopping with patience."""
    from sklearn.metrics import log_loss, roc_auc_score

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    data = Samples(args.cache)
    model = fresh(args.model, *data.sizes, history_len=data.history_len, feedback=data.feedback)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    tr, va, te = data.indices(0), data.indices(1), data.indices(2)
    rng = np.random.default_rng(args.seed)
    best, best_state, bad, trained = -1.0, None, 0, 0.0
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = rng.permutation(tr)
        t0 = time.perf_counter()
        for s in range(0, len(order), args.batch_size):
            x, y = data.batch(order[s : s + args.batch_size])
            loss = nn.functional.binary_cross_entropy_with_logits(model(*x), y)
            opt.zero_grad()
            loss.backward()
            with torch.no_grad():  # the padding rows stay zero, as attnrec's frozen row 0
                for e in model.emb.tables():
                    e.weight.grad[0].zero_()
            opt.step()
        trained += time.perf_counter() - t0
        model.eval()
        auc = roc_auc_score(data.label[va], predict(model, data, va))
        print(f"{args.model} epoch {epoch}: valid AUC {auc:.4f} ({len(tr) / (time.perf_counter() - t0):.0f} samples/s)", flush=True)
        if auc > best:
            best, bad = auc, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= args.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    p = predict(model, data, te)
    result = {
        "model": args.model,
        "valid_auc": best,
        "test_auc": roc_auc_score(data.label[te], p),
        "test_gauc": gauc(data.raw_user[te], data.label[te], p),
        "test_logloss": log_loss(data.label[te], np.clip(p, 1e-7, 1 - 1e-7)),
        "train_seconds": trained,
    }
    print(json.dumps(result))


def bench(args):
    """Training steps per second of the reference at each batch size, batches built as in
    training (numpy gathers), after warm-up steps."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    # On a GPU the clock is read after the queued kernels finish, and no step reads its loss.
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    data = Samples(args.cache)
    tr = data.indices(0)
    rng = np.random.default_rng(0)
    for bs in args.batch_sizes:
        torch.manual_seed(0)
        model = fresh(args.model, *data.sizes, history_len=data.history_len, feedback=data.feedback).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        order = rng.permutation(tr)
        n = 0
        for step in range(args.warmup + args.steps):
            if step == args.warmup:
                sync()
                t0, n = time.perf_counter(), 0
            s = (step * bs) % max(len(order) - bs, 1)
            x, y = data.batch(order[s : s + bs])
            x, y = tuple(t.to(device, non_blocking=True) for t in x), y.to(device, non_blocking=True)
            loss = nn.functional.binary_cross_entropy_with_logits(model(*x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            n += len(y)
        sync()
        secs = time.perf_counter() - t0
        print(json.dumps({"impl": "pytorch-reference", "model": args.model, "batch_size": bs, "threads": args.threads, "device": args.device, "steps": args.steps, "samples_per_sec": n / secs, "ms_per_step": 1000 * secs / args.steps}), flush=True)


def read_ml1m(data):
    """ratings (user_id, item_id, rating, timestamp, row in file order) and {item: first genre} of an
    ml-1m-format folder. The '::' separator is read by pandas' C parser as ':' with every other
    column kept (its Python engine, which takes '::', is 10× slower); titles hold ':', so movies.dat
    (small) goes through the Python engine."""
    import pandas as pd

    r = pd.read_csv(data / "ratings.dat", sep=":", header=None, usecols=[0, 2, 4, 6], dtype=np.int64, engine="c")
    r.columns = ["user_id", "item_id", "rating", "timestamp"]
    r["row"] = np.arange(len(r), dtype=np.uint32)
    movies = pd.read_csv(data / "movies.dat", sep="::", engine="python", header=None, names=["item_id", "title", "genres"], encoding="latin-1")
    genre = dict(zip(movies.item_id, movies.genres.fillna("").str.split("|").str[0].str.strip()))
    return r, genre


def vocab_index(keys, vocab):
    """Indices of `keys` in a vocabulary list (2 + position; 1 = out of vocabulary)."""
    import pandas as pd

    return pd.Series(np.arange(2, len(vocab) + 2, dtype=np.int64), index=pd.Index(vocab)).reindex(keys).fillna(1).to_numpy(np.int64, copy=True)


def prepare(args):
    """ml-ctr-v1 samples of DATA into OUT/samples.parquet and OUT/feature_map.json."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    r, genre = read_ml1m(args.data)
    t_load = time.perf_counter()
    r = r.sort_values(["user_id", "timestamp", "row"], kind="stable").reset_index(drop=True)
    n = len(r)
    user = r.user_id.to_numpy()
    first = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    counts = np.diff(np.r_[first, n])
    user_start = np.repeat(first, counts)
    pos = np.arange(n) - user_start
    total = np.repeat(counts, counts)
    split = np.where(pos < np.floor(total * 0.8), 0, np.where(pos < np.floor(total * 0.9), 1, 2)).astype(np.int32)
    label = (r.rating.to_numpy() >= 4.0).astype(np.float32)
    t_protocol = time.perf_counter()
    train = split == 0
    users = np.unique(user[train]).tolist()
    items = np.unique(r.item_id.to_numpy()[train]).tolist()
    genres = sorted({genre.get(i, "") for i in items} - {""})
    item_genre = r.item_id.map(genre).fillna("").to_numpy()
    cols = {
        "row": r.row.to_numpy(np.uint32),
        "user_id": user,
        "item_id": r.item_id.to_numpy(),
        "timestamp": r.timestamp.to_numpy(),
        "label": label,
        "split": split,
        "user_start": user_start.astype(np.uint32),
        "history_end": np.arange(n, dtype=np.uint32),
        "user_idx": vocab_index(user, users),
        "item_idx": vocab_index(r.item_id.to_numpy(), items),
        "genre_idx": vocab_index(item_genre, genres),
    }
    t_features = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), args.out / "samples.parquet")
    (args.out / "feature_map.json").write_text(json.dumps({"history_len": args.history_len, "user": users, "item": items, "genre": genres}))
    t_end = time.perf_counter()
    stages = {"load": t_load - t0, "protocol": t_protocol - t_load, "features": t_features - t_protocol, "write": t_end - t_features}
    print(json.dumps({"impl": "pytorch-reference", "rows": n, "seconds": t_end - t0, "stage_seconds": stages}), flush=True)


def score(args):
    """Scores every (user_id, item_id) row of CANDIDATES with RUN's model; the history of a user is
    their last L events in DATA's log (time order), right-aligned; writes the rows with a `score`
    column."""
    import pandas as pd

    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    model = build(args.run)
    fm = json.loads((args.run / "feature_map.json").read_text())
    L = fm["history_len"]
    feedback = fm.get("history_feedback", False)
    r, genre = read_ml1m(args.data)
    r = r.sort_values(["user_id", "timestamp", "row"], kind="stable")
    r["item_idx"] = vocab_index(r.item_id.to_numpy(), fm["item"])
    r["genre_idx"] = vocab_index(r.item_id.map(genre).fillna("").to_numpy(), fm["genre"])
    # Each user's last L events as a right-aligned [U, L] matrix.
    tail = r.groupby("user_id", sort=True).tail(L)
    users = tail.user_id.to_numpy()
    log_users, first, counts = np.unique(users, return_index=True, return_counts=True)
    row = np.repeat(np.arange(len(log_users)), counts)
    col = L - np.repeat(counts, counts) + (np.arange(len(users)) - np.repeat(first, counts))
    hist_item = np.zeros((len(log_users) + 1, L), np.int64)
    hist_genre = np.zeros_like(hist_item)
    hist_item[row, col] = tail.item_idx.to_numpy()
    hist_genre[row, col] = tail.genre_idx.to_numpy()
    hist_feedback = np.zeros_like(hist_item)
    hist_feedback[row, col] = np.where(tail.rating.to_numpy() >= 4.0, 2, 1)
    cands = pd.read_csv(args.candidates)
    for c in ("user_id", "item_id"):
        if c not in cands:
            raise SystemExit(f"attnrec_ref: {args.candidates}: no '{c}' column")
    cu, ci = cands.user_id.to_numpy(), cands.item_id.to_numpy()
    # Users absent from the log get the all-padding row at the end.
    at = np.searchsorted(log_users, cu)
    found = (at < len(log_users)) & (log_users[np.minimum(at, len(log_users) - 1)] == cu)
    hrow = np.where(found, at, len(log_users))
    user_idx = vocab_index(cu, fm["user"])
    item_idx = vocab_index(ci, fm["item"])
    genre_idx = vocab_index(pd.Series(ci).map(genre).fillna("").to_numpy(), fm["genre"])
    out = np.empty(len(cands), np.float32)
    tt = torch.from_numpy
    with torch.inference_mode():
        for s in range(0, len(cands), args.batch_size):
            sl = slice(s, s + args.batch_size)
            h = hrow[sl]
            hi = tt(hist_item[h])
            extra = (tt(hist_feedback[h]),) if feedback else ()
            p = model(tt(user_idx[sl]), tt(item_idx[sl]), tt(genre_idx[sl]), hi, tt(hist_genre[h]), hi != 0, *extra).sigmoid()
            out[sl] = p.numpy()
    cands["score"] = out
    cands.to_csv(args.out, index=False)
    print(json.dumps({"impl": "pytorch-reference", "rows": len(cands), "seconds": time.perf_counter() - t0}), flush=True)


def build(run):
    """The reference model of the run folder `run`, with its weights."""
    run = pathlib.Path(run)
    cfg = tomllib.loads((run / "config.toml").read_text())
    proto = cfg.get("protocol", {})
    if proto.get("time_gap") or proto.get("user_features") or proto.get("item_features"):
        raise SystemExit("attnrec_ref: only runs without time gaps or side features have a reference")
    pooling = cfg["model"].get("pooling", {})
    if pooling.get("scale", "none") != "none" or pooling.get("with_mean", False) or pooling.get("feedback", "keys_and_values") != "keys_and_values":
        raise SystemExit("attnrec_ref: the reference pools as DIN does (pooling at its defaults)")
    model_cfg = cfg["model"]
    kind = model_cfg["kind"]
    mlp = model_cfg.get("mlp", {})
    if mlp.get("activation", "prelu") != "prelu" or mlp.get("batch_norm", False):
        raise SystemExit("attnrec_ref: the reference MLP is PReLU without batch norm")
    weights = read_safetensors(run / "model.safetensors")
    dim = model_cfg.get("embed_dim", 16)
    emb = Embeddings(weights["emb.user.weight"].shape[0], weights["emb.item.weight"].shape[0], weights["emb.genre.weight"].shape[0], dim, "emb.feedback.weight" in weights)
    hidden = mlp.get("hidden", [200, 80])
    if kind == "base":
        model = Base(emb, hidden)
    elif kind == "din":
        att = model_cfg.get("attention", {})
        score = att.get("score", {})
        if score.get("kind") != "din_mlp" or att.get("align", "none") != "none" or score.get("activation", "prelu") != "prelu" or att.get("heads", 1) != 1:
            raise SystemExit("attnrec_ref: the reference DIN is the default one (din_mlp score, PReLU, no normalization, one head)")
        model = Din(emb, score.get("hidden", [80, 40]), hidden)
    elif kind == "bst":
        t = model_cfg.get("transformer", {})
        if t.get("ffn_activation", "leaky_relu") != "leaky_relu":
            raise SystemExit("attnrec_ref: the reference BST's feed-forward activation is leaky_relu")
        history_len = cfg.get("protocol", {}).get("history_len", 50)
        model = Bst(emb, hidden, history_len, t.get("heads", 2), t.get("ffn_dim"), t.get("blocks", 1), t.get("dropout", 0.1), t.get("positions", True))
        model.load(weights)
    elif kind == "din_sa":
        t = model_cfg.get("encoder", {})
        att = model_cfg.get("attention", {})
        score = att.get("score", {})
        if t.get("ffn_activation", "leaky_relu") != "leaky_relu":
            raise SystemExit("attnrec_ref: the reference encoder's feed-forward activation is leaky_relu")
        if score.get("kind", "din_mlp") != "din_mlp" or att.get("align", "softmax") != "softmax" or score.get("activation", "prelu") != "prelu" or att.get("heads", 1) != 1:
            raise SystemExit("attnrec_ref: the reference din_sa is the default one (din_mlp score, PReLU, softmax, one head)")
        history_len = cfg.get("protocol", {}).get("history_len", 50)
        model = DinSa(emb, score.get("hidden", [80, 40]), hidden, history_len, t.get("heads", 2), t.get("ffn_dim"), t.get("blocks", 1), t.get("dropout", 0.1), t.get("positions", True))
        model.load(weights)
    else:
        raise SystemExit(f"attnrec_ref: no reference for model '{kind}' (base, din, bst, din_sa)")
    emb.load(weights)
    if kind in ("din", "din_sa"):
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
        extra = (t("hist_feedback"),) if model.emb.feedback is not None else ()
        with torch.no_grad():
            got = model(t("user"), t("item"), t("genre"), t("hist_item"), t("hist_genre"), t("hist_mask").bool(), *extra)
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
    for name, helptext in (("train", "train on attnrec's prepared samples; prints test AUC, GAUC, LogLoss as JSON"), ("bench", "training throughput at several batch sizes")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("cache", type=pathlib.Path, help="a prepared-sample folder (samples.parquet, feature_map.json)")
        p.add_argument("--model", choices=["base", "din", "bst", "din_sa"], default="din")
        p.add_argument("--threads", type=int, default=2)
        if name == "train":
            p.add_argument("--epochs", type=int, default=10)
            p.add_argument("--batch-size", type=int, default=256)
            p.add_argument("--lr", type=float, default=1e-3)
            p.add_argument("--patience", type=int, default=2)
            p.add_argument("--seed", type=int, default=42)
        else:
            p.add_argument("--batch-sizes", type=lambda v: [int(x) for x in v.split(",")], default=[256, 1024, 4096])
            p.add_argument("--steps", type=int, default=100)
            p.add_argument("--warmup", type=int, default=10)
            p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (batches are built on the CPU and copied, as in training)")
    p = sub.add_parser("prepare", help="the default protocol's samples of an ml-1m-format folder, with pandas")
    p.add_argument("data", type=pathlib.Path)
    p.add_argument("--out", type=pathlib.Path, required=True)
    p.add_argument("--history-len", type=int, default=50)
    p = sub.add_parser("score", help="score a CSV of (user_id, item_id) pairs with a run's model")
    p.add_argument("run", type=pathlib.Path)
    p.add_argument("data", type=pathlib.Path, help="the ml-1m-format folder whose log gives the histories")
    p.add_argument("candidates", type=pathlib.Path)
    p.add_argument("--out", type=pathlib.Path, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=1024)
    args = ap.parse_args()
    {"parity": parity, "train": train, "bench": bench, "prepare": prepare, "score": score}[args.cmd](args)


if __name__ == "__main__":
    main()
