#!/usr/bin/env python3
"""Batch scoring on Apache Spark with a trained attnrec run.

Reads the candidates and the behavior log from any Spark source, repartitions both by the same
expression on the user column (so that every task holds all of its users' events and no one
else's), and in each task runs the shipped `attnrec score` binary on that partition. The scores
come back as a Spark DataFrame (the candidates' columns, then `score`, and `logit`, `rank`,
`top_attended` where asked), written as a Parquet dataset.

    spark-submit --master yarn --deploy-mode cluster \\
        --conf spark.executorEnv.LD_LIBRARY_PATH=/opt/torch/lib \\
        scripts/spark/score.py \\
        --attnrec /shared/bin/attnrec --run /shared/runs/din \\
        --candidates s3://bucket/candidates/ --history s3://bucket/ratings/ \\
        --output s3://bucket/scores/ --partitions 400

The binary and the run folder are shipped to the executors with SparkContext.addFile, so they
need only exist where the driver runs. The binary finds libtorch by its rpath, or by
LD_LIBRARY_PATH on the executors (the lib/ folder of an installed torch of the run's version).

The history log needs a user, an item, a timestamp (whole seconds) and the rating or 0/1 label
column of the run's protocol; it is written in each task in the layout the run was trained on,
with that layout's item table (--items, default: the run's own dataset's) beside it, so that
histories, genres and feedback are built exactly as `attnrec score` builds them.

Used as a library: `score_dataframe(spark, candidates_df, history_df, Options(...))` returns the
scored DataFrame without writing it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TASK_FAILED = "attnrec score failed in a task"
KIND = "__attnrec_kind"
KEY = "__attnrec_key"
H_USER, H_ITEM, H_TIME, H_VALUE, H_CAT = "__h_user", "__h_item", "__h_time", "__h_value", "__h_category"

# The ratings file and the item table of each MovieLens layout, and how a ratings line is joined.
LAYOUTS = {
    "ml100k": ("u.data", "u.item", "\t", None),
    "ml1m": ("ratings.dat", "movies.dat", "::", None),
    "ml-csv": ("ratings.csv", "movies.csv", ",", "userId,movieId,rating,timestamp"),
}


@dataclasses.dataclass
class Layout:
    """How a run's history must be written: its format, and for a generic log its [data.log]."""

    format: str
    items: Path | None  # the item table to put beside the ratings (MovieLens layouts)
    log: dict | None = None


@dataclasses.dataclass
class Options:
    attnrec: str
    run: str
    items: str | None = None
    partitions: int | None = None
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"
    history_user: str = "user_id"
    history_item: str = "item_id"
    history_time: str = "timestamp"
    history_value: str | None = None  # default: `rating`, or the generic log's label/rating column
    history_category: str | None = None
    threads: int = 1
    top_k: int | None = None
    logit: bool = False
    explain: bool = False
    strict: bool = False
    batch_size: int | None = None  # default: attnrec's, which depends on the model


class UserError(Exception):
    """A mistake in the arguments or the inputs: one line, exit status 2."""


def read_layout(run: Path, items: str | None) -> Layout:
    """The layout of the run's training data, from its config.toml (or the names in source.json)."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib  # type: ignore
    cfg_path = run / "config.toml"
    if not cfg_path.is_file():
        raise UserError(f"{run}: not an attnrec run folder (no config.toml)")
    data = tomllib.loads(cfg_path.read_text()).get("data", {})
    fmt, log = data.get("format"), data.get("log")
    if fmt is None and log is not None:
        fmt = "log"
    if fmt is None:
        names = [f["name"] for f in json.loads((run / "source.json").read_text())] if (run / "source.json").is_file() else []
        found = [f for f, (ratings, _, _, _) in LAYOUTS.items() if ratings in names or any(n.startswith(ratings + "/") for n in names)]
        if len(found) != 1:
            raise UserError(f"{run}: cannot tell the layout of the run's data (set [data] format in its config.toml)")
        fmt = found[0]
    fmt = {"ml10m": "ml1m", "ml20m": "ml-csv", "ml25m": "ml-csv", "ml32m": "ml-csv", "ml-latest": "ml-csv"}.get(fmt, fmt)
    if fmt == "log":
        return Layout("log", None, log)
    if fmt not in LAYOUTS:
        raise UserError(f"{run}: histories of the {fmt} layout are not written by this job (MovieLens layouts and generic logs are)")
    item_file = Path(items) if items else Path(data.get("path", "")) / LAYOUTS[fmt][1]
    if not item_file.is_file():
        raise UserError(f"{item_file}: the item table ({LAYOUTS[fmt][1]}) is not there; name it with --items")
    return Layout(fmt, item_file)


def write_history(table, layout: Layout, items_local: str | None, folder: Path) -> None:
    """Writes one task's history rows (pyarrow table of H_* columns) in the run's layout."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    if layout.format == "log":
        spec = layout.log
        value = spec.get("label") or spec.get("rating")
        cols = {spec["user"]: table[H_USER], spec["item"]: table[H_ITEM], spec["timestamp"]: table[H_TIME], value: table[H_VALUE]}
        if spec.get("category"):
            cols[spec["category"]] = table[H_CAT]
        # A folder of the log file's name holding one Parquet part: attnrec reads it as the file.
        (folder / spec["file"]).mkdir()
        pq.write_table(pa.table(cols), folder / spec["file"] / "part-00000.parquet")
        return
    ratings, item_name, sep, header = LAYOUTS[layout.format]
    text = lambda c: pc.cast(c, pa.string())  # noqa: E731
    value = table[H_VALUE]
    if pa.types.is_floating(value.type):
        # Whole ratings as integers (3, not 3.0), halves as written (3.5).
        whole = pc.equal(value, pc.floor(value))
        value = pc.if_else(whole, text(pc.cast(value, pa.int64(), safe=False)), text(value))
    lines = pc.binary_join_element_wise(text(table[H_USER]), text(table[H_ITEM]), text(value), text(table[H_TIME]), sep)
    with open(folder / ratings, "w", encoding="utf-8") as f:
        if header:
            f.write(header + "\n")
        for chunk in lines.chunks:
            body = "\n".join(chunk.to_pylist())
            if body:
                f.write(body + "\n")
    shutil.copyfile(items_local, folder / item_name)


def make_task(opts: Options, layout: Layout, cand_cols: list[str], out_schema, bin_name: str, run_name: str, items_name: str | None):
    """The function each task runs on its partition's Arrow batches."""

    def task(batches):
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
        from pyspark import SparkFiles

        batches = list(batches)
        if not batches:
            return
        tbl = pa.Table.from_batches(batches)
        kind = tbl[KIND]
        cands = tbl.filter(pc.equal(kind, 0)).select(cand_cols)
        if cands.num_rows == 0:
            return
        hist = tbl.filter(pc.equal(kind, 1))
        exe = SparkFiles.get(bin_name)
        if not os.access(exe, os.X_OK):
            os.chmod(exe, 0o755)
        with tempfile.TemporaryDirectory(prefix="attnrec-task-") as d:
            d = Path(d)
            pq.write_table(cands, d / "candidates.parquet")
            write_history(hist, layout, SparkFiles.get(items_name) if items_name else None, d / "history")
            cmd = [exe, "score", "-q", "--run", SparkFiles.get(run_name), "--candidates", str(d / "candidates.parquet"),
                   "--output", str(d / "scores.parquet"), "--history", str(d / "history"), "--threads", str(opts.threads),
                   "--user-col", opts.user_col, "--item-col", opts.item_col, "--time-col", opts.time_col]
            if opts.batch_size:
                cmd += ["--batch-size", str(opts.batch_size)]
            if opts.top_k:
                cmd += ["--top-k", str(opts.top_k)]
            cmd += [flag for flag, on in (("--logit", opts.logit), ("--explain", opts.explain), ("--strict", opts.strict)) if on]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{TASK_FAILED} (exit {done.returncode}): {done.stderr.strip()}")
            out = pq.read_table(d / "scores.parquet")
            out = out.select(out_schema.names).cast(out_schema)
            yield from out.to_batches()

    return task


def score_dataframe(spark, candidates, history, opts: Options):
    """The scored DataFrame: `candidates` with `score` (and the asked-for columns) added."""
    import pyspark.sql.functions as F
    from pyspark.sql import types as T
    from pyspark.sql.pandas.types import to_arrow_schema

    run = Path(opts.run).resolve()
    layout = read_layout(run, opts.items)
    for col in (opts.user_col, opts.item_col):
        if col not in candidates.columns:
            raise UserError(f"candidates: no column '{col}' (columns: {', '.join(candidates.columns)})")
    value = opts.history_value
    if value is None:
        value = (layout.log.get("label") or layout.log.get("rating")) if layout.log else "rating"
    category = opts.history_category or (layout.log.get("category") if layout.log else None)
    wanted = [opts.history_user, opts.history_item, opts.history_time, value] + ([category] if category else [])
    for col in wanted:
        if col not in history.columns:
            raise UserError(f"history: no column '{col}' (columns: {', '.join(history.columns)})")

    sc = spark.sparkContext
    sc.addFile(str(Path(opts.attnrec).resolve()))
    sc.addFile(str(run), recursive=True)
    if layout.items is not None:
        sc.addFile(str(layout.items.resolve()))

    # One frame: candidates (kind 0) and history events (kind 1), keyed by the user id as text so
    # that an int column on one side and a long on the other hash alike.
    cand_cols = list(candidates.columns)
    c = candidates.withColumn(KIND, F.lit(0)).withColumn(KEY, F.col(opts.user_col).cast("string"))
    h = history.select(
        F.col(opts.history_user).alias(H_USER),
        F.col(opts.history_item).alias(H_ITEM),
        F.col(opts.history_time).cast("long").alias(H_TIME),
        F.col(value).alias(H_VALUE),
        *([F.col(category).cast("string").alias(H_CAT)] if category else []),
    ).withColumn(KIND, F.lit(1)).withColumn(KEY, F.col(H_USER).cast("string"))
    both = c.unionByName(h, allowMissingColumns=True)
    n = opts.partitions or spark.sparkContext.defaultParallelism
    both = both.repartition(n, F.col(KEY))

    fields = list(candidates.schema.fields) + [T.StructField("score", T.DoubleType())]
    if opts.logit:
        fields.append(T.StructField("logit", T.DoubleType()))
    if opts.top_k:
        fields.append(T.StructField("rank", T.LongType()))
    if opts.explain:
        fields.append(T.StructField("top_attended", T.StringType()))
    schema = T.StructType(fields)
    task = make_task(opts, layout, cand_cols, to_arrow_schema(schema), Path(opts.attnrec).name, run.name,
                     layout.items.name if layout.items is not None else None)
    return both.mapInArrow(task, schema)


def read_source(spark, spec: str, fmt: str | None, header: bool):
    """A DataFrame from `table:NAME` (the catalog) or a path in `fmt` (default: by extension)."""
    if spec.startswith("table:"):
        return spark.table(spec[len("table:"):])
    path = spec.rstrip("/")
    if fmt is None:
        name = Path(path).name.lower()
        fmt = next((f for f in ("parquet", "csv", "json", "orc") if name.endswith("." + f)), None)
        if fmt is None and os.path.isdir(path):
            names = [n for n in os.listdir(path) if not n.startswith((".", "_"))]
            fmt = next((f for f in ("parquet", "csv", "json", "orc") if names and all(n.endswith("." + f) for n in names)), None)
        if fmt is None:
            raise UserError(f"{spec}: cannot tell its format; name it with --candidates-format / --history-format")
    reader = spark.read.format(fmt)
    if fmt == "csv":
        reader = reader.option("header", str(header).lower()).option("inferSchema", "true")
    return reader.load(path)


def parse_args(argv):
    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        pass

    p = argparse.ArgumentParser(
        prog="score.py",
        description=__doc__,
        epilog="on one machine: python scripts/spark/score.py --master local[2] --attnrec target/debug/attnrec "
               "--run runs/din --candidates cands.parquet --history ratings.parquet --output scores/ "
               "(the README's 'Scoring at scale' has the measured cost)",
        formatter_class=Formatter,
    )
    p.add_argument("--attnrec", required=True, help="the attnrec binary (shipped to the executors)")
    p.add_argument("--run", required=True, help="run folder written by `attnrec train` (shipped to the executors)")
    p.add_argument("--candidates", required=True, help="path (file or folder of parts) or table:NAME")
    p.add_argument("--history", required=True, help="the behavior log: path or table:NAME")
    p.add_argument("--output", required=True, help="folder the scores are written to as Parquet")
    p.add_argument("--mode", default="errorifexists", choices=["errorifexists", "overwrite"], help="if --output exists")
    p.add_argument("--candidates-format", help="Spark source format [default: by extension]")
    p.add_argument("--history-format", help="Spark source format [default: by extension]")
    p.add_argument("--no-header", action="store_true", help="CSV sources have no header line")
    p.add_argument("--items", help="the item table of the run's layout (u.item, movies.dat, movies.csv) [default: the run's dataset's]")
    p.add_argument("--partitions", type=int, help="tasks [default: spark.default.parallelism]")
    p.add_argument("--master", help="Spark master when run with python instead of spark-submit, e.g. local[2]")
    p.add_argument("--user-col", default="user_id")
    p.add_argument("--item-col", default="item_id")
    p.add_argument("--time-col", default="timestamp", help="request time (whole seconds); histories are the events before it")
    p.add_argument("--history-user", default="user_id")
    p.add_argument("--history-item", default="item_id")
    p.add_argument("--history-time", default="timestamp", help="whole seconds, or a Spark timestamp")
    p.add_argument("--history-value", help="rating or 0/1 label column [default: rating, or the run's [data.log] one]")
    p.add_argument("--history-category", help="item category column, for a generic-log run [default: its [data.log] one]")
    p.add_argument("--threads", type=int, default=1, help="attnrec threads per task (one per task core)")
    p.add_argument("--batch-size", type=int, help="rows per forward pass [default: attnrec score's, by model]")
    p.add_argument("--top-k", type=int, help="each user's best K candidates (users are whole in one task)")
    p.add_argument("--logit", action="store_true")
    p.add_argument("--explain", action="store_true")
    p.add_argument("--strict", action="store_true")
    a = p.parse_args(argv)
    if a.partitions is not None and a.partitions < 1:
        p.error("--partitions must be at least 1")
    if a.threads < 1 or (a.batch_size is not None and a.batch_size < 1) or (a.top_k is not None and a.top_k < 1):
        p.error("--threads, --batch-size and --top-k must be at least 1")
    for flag, path in (("--attnrec", a.attnrec), ("--run", a.run)):
        if not os.path.exists(path):
            p.error(f"{flag} {path}: not found")
    return a


def main(argv=None) -> int:
    a = parse_args(sys.argv[1:] if argv is None else argv)
    from pyspark.sql import SparkSession

    # No progress bars: a batch job's stderr is a log, and its last line is the error, if any.
    builder = SparkSession.builder.appName("attnrec-score").config("spark.ui.showConsoleProgress", "false")
    if a.master:
        builder = builder.master(a.master)
    spark = builder.getOrCreate()
    try:
        opts = Options(
            attnrec=a.attnrec, run=a.run, items=a.items, partitions=a.partitions, user_col=a.user_col, item_col=a.item_col,
            time_col=a.time_col, history_user=a.history_user, history_item=a.history_item, history_time=a.history_time,
            history_value=a.history_value, history_category=a.history_category, threads=a.threads, top_k=a.top_k,
            logit=a.logit, explain=a.explain, strict=a.strict, batch_size=a.batch_size,
        )
        cands = read_source(spark, a.candidates, a.candidates_format, not a.no_header)
        hist = read_source(spark, a.history, a.history_format, not a.no_header)
        scored = score_dataframe(spark, cands, hist, opts)
        scored.write.mode(a.mode).parquet(a.output)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001: a task's failure arrives wrapped in Spark's trace
        line = next((l.strip() for l in str(e).splitlines() if TASK_FAILED in l), None)
        if line is None:
            raise
        print(f"error: {line[line.index(TASK_FAILED):]}", file=sys.stderr)
        return 2
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
