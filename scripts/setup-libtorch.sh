#!/usr/bin/env bash
# Provision libtorch for tch 0.24 (PyTorch 2.11.0) once, outside the work tree.
#
# - If LIBTORCH is set, it is used as is (checked, never modified).
# - Otherwise a virtualenv at $ATTNREC_TORCH_VENV (default ~/.cache/attnrec/torch-2.11.0)
#   gets torch==2.11.0 from PyPI. Idempotent: an existing, importable venv is left alone.
#
# Writes nothing into the repository. Prints the environment to build with when called
# with --print-env (used by the Makefile and .ci/run).
set -euo pipefail

TORCH_VERSION=2.11.0
VENV="${ATTNREC_TORCH_VENV:-$HOME/.cache/attnrec/torch-$TORCH_VERSION}"

die() { echo "setup-libtorch: $*" >&2; exit 1; }

if [ -n "${LIBTORCH:-}" ]; then
  [ -d "$LIBTORCH/lib" ] || die "LIBTORCH=$LIBTORCH has no lib/ folder; unset LIBTORCH to let this script install torch==$TORCH_VERSION"
  if [ "${1:-}" = "--print-env" ]; then
    echo "export LIBTORCH=$LIBTORCH"
  fi
  exit 0
fi

ready() {
  [ -x "$VENV/bin/python" ] &&
    "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null
}

if ! ready; then
  command -v python3 >/dev/null || die "python3 not found; install Python 3.9+ and rerun 'make setup'"
  echo "setup-libtorch: installing torch==$TORCH_VERSION into $VENV (one-time, a few GB)" >&2
  mkdir -p "$(dirname "$VENV")"
  # Build in a temp folder and move it into place so an interrupted install never looks ready.
  tmp="$VENV.partial"
  rm -rf "$tmp"
  python3 -m venv "$tmp"
  "$tmp/bin/python" -m pip install --quiet --upgrade pip >&2
  # numpy and scikit-learn are for the test-fixture generators only.
  "$tmp/bin/python" -m pip install --quiet "torch==$TORCH_VERSION" numpy scikit-learn >&2
  rm -rf "$VENV"
  mv "$tmp" "$VENV"
  # A venv records its own path in scripts; recreate the activation shims at the final path.
  python3 -m venv --upgrade "$VENV" >/dev/null 2>&1 || true
  ready || die "torch==$TORCH_VERSION installed into $VENV but does not import; remove $VENV and rerun 'make setup'"
fi

# The fixture generators' independent references (pandas for the protocol, pyarrow to read the
# prepared Parquet samples); added to an existing venv once, never re-installed.
if ! "$VENV/bin/python" -c "import numpy, sklearn, pandas, pyarrow" 2>/dev/null; then
  echo "setup-libtorch: adding numpy, scikit-learn, pandas, pyarrow to $VENV (one-time)" >&2
  "$VENV/bin/python" -m pip install --quiet numpy scikit-learn pandas pyarrow >&2 ||
    die "could not install the fixture tools (numpy scikit-learn pandas pyarrow) into $VENV"
fi

# PySpark for the Spark scoring job and its test (scripts/spark/score.py, tests/spark.rs), with
# the Java runtime Spark needs: from Debian where `java` is missing.
SPARK_VERSION=3.5.9
if ! "$VENV/bin/python" -c "import pyspark, sys; sys.exit(0 if pyspark.__version__ == '$SPARK_VERSION' else 1)" 2>/dev/null; then
  echo "setup-libtorch: adding pyspark==$SPARK_VERSION to $VENV (one-time, ~320 MB)" >&2
  "$VENV/bin/python" -m pip install --quiet "pyspark==$SPARK_VERSION" >&2 || die "could not install pyspark==$SPARK_VERSION into $VENV"
fi
if ! command -v java >/dev/null; then
  echo "setup-libtorch: no java on PATH; installing Debian's openjdk-17-jre-headless for Spark" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    die "Spark needs a Java runtime (17): install openjdk-17-jre-headless, or run this as root"
  fi
  $sudo apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >&2 ||
    die "could not install openjdk-17-jre-headless; install a Java 17 runtime by hand"
fi

if [ "${1:-}" = "--print-env" ]; then
  echo "export LIBTORCH_USE_PYTORCH=1"
  echo "export PATH=$VENV/bin:\$PATH"
  echo "export VIRTUAL_ENV=$VENV"
fi
