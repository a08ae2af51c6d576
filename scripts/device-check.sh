#!/usr/bin/env bash
# The CUDA device check (issue 20): one script, two halves.
#
#   scripts/device-check.sh pack
#       Here (the build machine): builds attnrec, strips it and gzips it into target/device-pack/
#       (about 26 MB; a device call carries at most 64 MiB).
#
#   scripts/device-check.sh run [--device cuda|cuda:N|cpu] [--bin PATH] [--work DIR] [--quick]
#       There (or here with --device cpu, to test the script): against the machine's own libtorch
#       (the `torch` of its python3; LD_LIBRARY_PATH is set from it), on the synthetic `small`
#       preset it generates itself, for din and bst:
#         - the same CPU-trained run evaluated on the CPU and on DEVICE: largest |Δ probability|
#           over the test split (goal ≤ 1e-4);
#         - a run trained on the CPU and one trained on DEVICE, same seed: test AUC (goal: within
#           0.003);
#         - the DEVICE-trained run evaluated on the CPU and on DEVICE (goal ≤ 1e-5: a run trained
#           on the GPU scores the same wherever it is served), scored by `attnrec score` (which
#           runs on the CPU) on 20,000 rows, every row written, and exported (`attnrec export`);
#         - then training samples/s on DEVICE at batch 1,024 and 8,192 (`attnrec bench`), beside
#           the PyTorch reference's on the same device where its python has numpy and pyarrow.
#       It prints one table. --quick trains 1 epoch instead of 2 and skips the bench.
#
# On the device tool:  run(command="bash scripts/device-check.sh run --device cuda", carry=["target/device-pack"])
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "device-check: $*" >&2; exit 2; }

pack() {
  eval "$(scripts/setup-libtorch.sh --print-env)"
  cargo build --all-targets   # the same artifacts as `make build` and `make test` (one feature set)
  mkdir -p target/device-pack
  strip -o target/device-pack/attnrec target/debug/attnrec
  gzip -f -9 target/device-pack/attnrec
  ls -l target/device-pack
}

run_checks() {
  local device=cuda bin="" work="" epochs=2 quick=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --device) device="$2"; shift 2 ;;
      --bin) bin="$2"; shift 2 ;;
      --work) work="$2"; shift 2 ;;
      --quick) quick=1; epochs=1; shift ;;
      *) die "unknown argument '$1' (run [--device D] [--bin PATH] [--work DIR] [--quick])" ;;
    esac
  done
  work="${work:-$(mktemp -d)}"
  mkdir -p "$work"
  if [ -z "$bin" ]; then
    if [ -f target/device-pack/attnrec.gz ]; then
      gunzip -c target/device-pack/attnrec.gz > "$work/attnrec" && chmod +x "$work/attnrec"
      bin="$work/attnrec"
    else
      bin=target/debug/attnrec
    fi
  fi
  [ -x "$bin" ] || die "no attnrec binary at $bin (run 'scripts/device-check.sh pack' first)"
  # The machine's own libtorch, when its python has torch; else the binary's RUNPATH.
  local torch_lib
  torch_lib="$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null || true)"
  if [ -n "$torch_lib" ]; then
    export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "libtorch: $torch_lib ($(python3 -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)' 2>/dev/null))"
  fi
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

  local data="$work/small"
  "$bin" synth --preset small --seed 42 --out "$data" >/dev/null
  local rows=()
  row() { rows+=("$(printf '| %s | %s | %s | %s | %s | %s |' "$@")"); }
  # auc RUN DEVICE → the run's test AUC as `eval --json` prints it
  auc() { "$bin" eval "$1" --device "$2" --json | sed -E 's/.*"auc":([^,}]*).*/\1/'; }
  maxdiff() { paste -d, "$1" "$2" | awk -F, 'NR > 1 { d = $3 - $6; if (d < 0) d = -d; if (d > m) m = d } END { printf "%.3g", m + 0 }'; }
  le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }
  verdict() { if le "$1" "$2"; then echo pass; else echo FAIL; fi; }

  for m in din bst; do
    local cpu="$work/$m-cpu" dev="$work/$m-dev"
    "$bin" train --data "$data" --model "$m" --epochs "$epochs" --seed 1 --device cpu --out "$cpu" --force -q
    "$bin" train --data "$data" --model "$m" --epochs "$epochs" --seed 1 --device "$device" --out "$dev" --force -q
    # 1. The same weights on both devices.
    "$bin" eval "$cpu" --device cpu --predictions "$work/$m-p-cpu.csv" --json >/dev/null
    "$bin" eval "$cpu" --device "$device" --predictions "$work/$m-p-dev.csv" --json >/dev/null
    local d; d="$(maxdiff "$work/$m-p-cpu.csv" "$work/$m-p-dev.csv")"
    row "$m" "max abs diff of test probabilities, same weights" "cpu" "$device" "$d" "$(verdict "$d" 1e-4)"
    # 2. Trained on each device.
    local a_cpu a_dev diff
    a_cpu="$(auc "$cpu" cpu)"; a_dev="$(auc "$dev" "$device")"
    diff="$(awk -v a="$a_cpu" -v b="$a_dev" 'BEGIN { d = a - b; if (d < 0) d = -d; printf "%.4f", d }')"
    row "$m" "test AUC after $epochs epoch(s)" "$a_cpu" "$a_dev" "$diff" "$(verdict "$diff" 0.003)"
    # 3. The device-trained run served elsewhere: evaluated on both, scored, exported.
    "$bin" eval "$dev" --device cpu --predictions "$work/$m-p-devrun-cpu.csv" --json >/dev/null
    "$bin" eval "$dev" --device "$device" --predictions "$work/$m-p-devrun-dev.csv" --json >/dev/null
    d="$(maxdiff "$work/$m-p-devrun-cpu.csv" "$work/$m-p-devrun-dev.csv")"
    row "$m" "device-trained run: max abs diff of test probabilities, cpu vs device" "cpu" "$device" "$d" "$(verdict "$d" 1e-5)"
    printf 'user_id,item_id\n' > "$work/cands.csv"
    awk -F'::' 'NR <= 20000 { print $1 "," $2 }' "$data/ratings.dat" >> "$work/cands.csv"
    local ok=pass
    "$bin" score -q --run "$dev" --candidates "$work/cands.csv" --output "$work/$m-scores.csv" || ok=FAIL
    [ "$(wc -l < "$work/$m-scores.csv" 2>/dev/null || echo 0)" -eq 20001 ] || ok=FAIL
    row "$m" "score (CPU) of the device-trained run, 20,000 rows" "" "" "" "$ok"
    ok=pass
    "$bin" export --run "$dev" --out "$work/$m.pt" >/dev/null || ok=FAIL
    row "$m" "export (TorchScript) of the device-trained run" "" "" "" "$ok"
  done

  echo
  echo "| model | check | cpu | $device | diff | result |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  if [ "$quick" = 0 ] && [ "$device" != cpu ]; then
    echo
    # With the PyTorch reference on the same GPU where the machine's python can run it (torch,
    # numpy, pyarrow): its samples/s and the ratio beside attnrec's.
    local reference=()
    if python3 -c 'import torch, numpy, pyarrow' 2>/dev/null; then reference=(--reference); fi
    "$bin" bench --presets small --models din,bst,dien,base --batch-sizes 1024,8192 --threads 1 --device "$device" --steps 50 --warmup 10 "${reference[@]}"
  fi
  if printf '%s\n' "${rows[@]}" | grep -q FAIL; then exit 1; fi
}

case "${1:-}" in
  pack) pack ;;
  run) shift; run_checks "$@" ;;
  *) die "usage: scripts/device-check.sh pack | run [--device cuda|cpu] [--bin PATH] [--work DIR] [--quick]" ;;
esac
