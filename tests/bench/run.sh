#!/usr/bin/env bash
# The benchmark, in one command: builds in release mode, starts dge-idp (embedded
# default, or PostgreSQL + Redis in a throw-away database), loads it from the
# separate dge-bench process over loopback and prints the table with the
# reference figures (oidc-provider, the empty gRPC call, argon2id).
#
#   tests/bench/run.sh [--backend sqlite|postgres] [--accounts N] [--duration S]
#                      [--concurrency C] [--overload-factor F] [--debug]
#
# --debug uses the debug binaries (no release build); the figures are then meaningless,
# it only checks that every scenario still runs (the test suite does this).
# Other options are passed to dge-bench (`dge-bench --help`).
set -euo pipefail

cd "$(dirname "$0")/../.."
profile=release
args=()
for arg in "$@"; do
  if [[ "$arg" == --debug ]]; then
    profile=debug
  else
    args+=("$arg")
  fi
done

if [[ ! -d tests/upstream/node_modules/oidc-provider ]]; then
  (cd tests/upstream && npm ci --no-audit --no-fund)
fi
# The reference script uses tests/upstream's oidc-provider (the same pinned version).
[[ -e tests/bench/node_modules ]] || ln -s ../upstream/node_modules tests/bench/node_modules

target="${CARGO_TARGET_DIR:-target}"
if [[ "$profile" == release ]]; then
  cargo build --release -p dge-idp -p dge-bench
else
  cargo build -p dge-idp -p dge-bench
fi

exec "$target/$profile/dge-bench" --idp-bin "$target/$profile/dge-idp" \
  --reference-script tests/bench/oidc-provider-ref.mjs "${args[@]}"
