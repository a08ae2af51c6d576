# Source this to run cargo directly: `source scripts/env.sh && cargo test`.
# Provisions libtorch on first use (scripts/setup-libtorch.sh) and exports what torch-sys needs.
_attnrec_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if _attnrec_env="$("$_attnrec_root/scripts/setup-libtorch.sh" --print-env)"; then
  eval "$_attnrec_env"
else
  echo "attnrec: libtorch is not set up; run 'make setup' (or scripts/setup-libtorch.sh)" >&2
fi
unset _attnrec_root _attnrec_env
