#!/usr/bin/env python3
"""Spark's overhead, measured: the same candidates scored by one `attnrec score` process and by
scripts/spark/score.py under each given master, with wall times, rows/s and the ratio.

    python scripts/spark/bench.py --attnrec target/debug/attnrec --run RUN --data data/synth-ml1m \\
        --rows 10000000 --masters 'local[1],local[2]' --partitions 2,8

The candidates are the log's (user, item) pairs in file order, cycled to --rows, without
request times (every user's full history), written once as Parquet; the history is the log as
Parquet. Both are read from those files in every measurement, and every output is written as
Parquet, so reading and writing are part of each time. A MovieLens-layout dataset folder (the
synthetic presets' ml-1m layout, ml-100k, or ml-20m and later) is read for the log.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def read_log(data: Path):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    names = ["user_id", "item_id", "rating", "timestamp"]
    if (data / "ratings.dat").exists():
        lines = (data / "ratings.dat").read_text().splitlines()
        cols = list(zip(*(l.split("::") for l in lines)))
        return pa.table({n: pa.array([int(v) if n != "rating" else float(v) for v in c]) for n, c in zip(names, cols)})
    if (data / "u.data").exists():
        opts = pcsv.ReadOptions(column_names=names)
        return pcsv.read_csv(data / "u.data", read_options=opts, parse_options=pcsv.ParseOptions(delimiter="\t"))
    if (data / "ratings.csv").exists():
        t = pcsv.read_csv(data / "ratings.csv")
        return t.rename_columns(names)
    sys.exit(f"{data}: no ratings.dat, u.data or ratings.csv")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--attnrec", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--data", required=True, help="the run's dataset folder (MovieLens layout)")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--masters", default="local[1],local[2]")
    p.add_argument("--partitions", default="2", help="comma-separated task counts, each measured per master")
    p.add_argument("--threads", type=int, default=2, help="threads of the single process")
    a = p.parse_args()
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = Path(tempfile.mkdtemp(prefix="attnrec-spark-bench-"))
    try:
        log = read_log(Path(a.data))
        reps = -(-a.rows // log.num_rows)
        users = pa.concat_arrays([log["user_id"].combine_chunks()] * reps)[: a.rows]
        items = pa.concat_arrays([log["item_id"].combine_chunks()] * reps)[: a.rows]
        cands = tmp / "candidates.parquet"
        pq.write_table(pa.table({"user_id": users, "item_id": items}), cands)
        hist = tmp / "history.parquet"
        pq.write_table(log, hist)
        rows = []

        t = time.time()
        subprocess.run([a.attnrec, "score", "-q", "--threads", str(a.threads), "--run", a.run, "--candidates", str(cands),
                        "--output", str(tmp / "one.parquet")], check=True)
        one = time.time() - t
        rows.append(("attnrec score, one process", f"{a.threads} threads", one))
        print(f"one process: {a.rows} rows in {one:.1f} s", file=sys.stderr)
        for master in a.masters.split(","):
            for parts in a.partitions.split(","):
                out = tmp / "spark-out"
                shutil.rmtree(out, ignore_errors=True)
                env = dict(os.environ, PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1")
                t = time.time()
                subprocess.run([sys.executable, str(HERE / "score.py"), "--master", master, "--attnrec", a.attnrec, "--run", a.run,
                                "--candidates", str(cands), "--history", str(hist), "--output", str(out), "--partitions", parts,
                                "--threads", "1", "--items", str(items_file(Path(a.data)))], check=True, env=env)
                wall = time.time() - t
                rows.append((f"Spark {master}", f"{parts} tasks", wall))
                print(f"spark {master} {parts} tasks: {a.rows} rows in {wall:.1f} s", file=sys.stderr)
        print(f"| how | tasks / threads | rows | wall s | rows/s | vs one process |")
        print("|---|---|---|---|---|---|")
        for how, shape, wall in rows:
            print(f"| {how} | {shape} | {a.rows:,} | {wall:.1f} | {a.rows / wall:,.0f} | {one / wall:.2f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def items_file(data: Path) -> Path:
    for name in ("movies.dat", "u.item", "movies.csv"):
        if (data / name).exists():
            return data / name
    sys.exit(f"{data}: no item table")


if __name__ == "__main__":
    main()
