# The two commands of the README: `make demo` and `make test`. Each provisions libtorch first
# (scripts/setup-libtorch.sh, idempotent), then builds with one shared target dir and profile.
SHELL := /bin/bash
ENV := eval "$$(scripts/setup-libtorch.sh --print-env)"
CARGO_FLAGS ?=

.PHONY: setup build demo test clean-runs

setup:
	@scripts/setup-libtorch.sh

build:
	@$(ENV) && cargo build --all-targets $(CARGO_FLAGS)

demo:
	@$(ENV) && cargo build --all-targets $(CARGO_FLAGS) && target/debug/attnrec demo

test:
	@$(ENV) && cargo test $(CARGO_FLAGS)

clean-runs:
	rm -rf runs data
