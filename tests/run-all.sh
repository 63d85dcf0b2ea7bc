#!/usr/bin/env bash
# The one test command of DGE Identity: builds the binaries, runs the Rust tests,
# then the end-to-end tests against the real `dge-idp dev` and `dgectl`.
#
# Needs the Rust toolchain, python3, PostgreSQL on 127.0.0.1:5432 (user postgres,
# database test) and Redis on 127.0.0.1:6379. Creates .venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

section() {
    printf '\n==> %s\n' "$*"
}

fail() {
    printf '\nrun-all.sh: %s\n' "$*" >&2
    exit 1
}

section "Python environment for the end-to-end tests (.venv)"
if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv || fail "cannot create .venv with python3 -m venv (is python3-venv installed?)"
fi
# Playwright drives Debian's chromium (below); it must not download a browser of its own.
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 .venv/bin/python -m pip install -q --disable-pip-version-check -r tests/e2e/requirements.txt

section "Upstream OpenID Connect providers for the broker tests (npm ci in tests/upstream)"
command -v node >/dev/null || fail "node (Node.js >= 20.19) is needed: the broker tests run the oidc-provider package"
npm ci --prefix tests/upstream --no-audit --no-fund --loglevel=error \
    || fail "npm ci in tests/upstream failed (package-lock.json is committed; is the npm registry reachable?)"
section "Node relying party for the end-to-end tests (tests/rp-node, openid-client)"
npm ci --prefix tests/rp-node --no-audit --no-fund --loglevel=error \
    || fail "npm ci in tests/rp-node failed (are node and npm installed?)"

section "Headless Chromium for the browser tests (Debian package chromium, axe-core in tests/browser)"
CHROMIUM=${DGE_CHROMIUM:-/usr/bin/chromium}
if [[ ! -x $CHROMIUM ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
            || fail "apt-get install chromium failed: the browser tests need Debian's chromium at $CHROMIUM"
    else
        fail "$CHROMIUM is missing: install Debian's chromium package (apt-get install chromium, as root), or point DGE_CHROMIUM at a Chromium"
    fi
fi
[[ -x $CHROMIUM ]] || fail "$CHROMIUM is still missing after apt-get install chromium"
"$CHROMIUM" --headless --version >/dev/null 2>&1 || fail "$CHROMIUM does not start (missing libraries?)"
npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error \
    || fail "npm ci in tests/browser (axe-core) failed (package-lock.json is committed; is the npm registry reachable?)"

section "Services: PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379"
.venv/bin/python - <<'PY' || fail "PostgreSQL (127.0.0.1:5432, user postgres, database test) and Redis (127.0.0.1:6379) must be running; see the messages above"
import socket
import struct
import sys


def ask(port, request, size=64):
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.sendall(request)
        return sock.recv(size)


def postgres_answers():
    # SSLRequest: a PostgreSQL server answers with a single byte, S or N.
    return ask(5432, struct.pack("!ii", 8, 80877103), 1) in (b"S", b"N")


def redis_answers():
    return ask(6379, b"PING\r\n").startswith(b"+PONG")


failed = False
for name, probe in (("PostgreSQL", postgres_answers), ("Redis", redis_answers)):
    try:
        ok = probe()
    except OSError as error:
        ok, why = False, error
    else:
        why = "unexpected answer"
    print(f"{name}: {'ok' if ok else f'NOT ANSWERING ({why})'}")
    failed = failed or not ok
sys.exit(1 if failed else 0)
PY
if command -v psql >/dev/null; then
    psql -w -q -h 127.0.0.1 -p 5432 -U postgres -d test -tAc 'select 1' >/dev/null \
        || fail "PostgreSQL on 127.0.0.1:5432 refuses user postgres on database test"
fi
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/test
export REDIS_URL=redis://127.0.0.1:6379

section "cargo build --workspace --bins"
cargo build --workspace --bins

section "cargo test --workspace"
cargo test --workspace

section "Static check of the end-to-end tests (pyflakes)"
.venv/bin/python -m pyflakes tests/e2e/*.py

section "End-to-end tests (pytest tests/e2e)"
.venv/bin/python -m pytest -q tests/e2e

section "End-to-end tests again on PostgreSQL + Redis (DGE_E2E_BACKEND=postgres)"
# The main journey, the broker suite (which reads its SQLite file), the replicas and
# deploy/ already ran above on the backends they need; the rest runs again here.
DGE_E2E_BACKEND=postgres .venv/bin/python -m pytest -q \
    tests/e2e/test_bad_input.py tests/e2e/test_local_accounts.py tests/e2e/test_mail_smtp.py \
    tests/e2e/test_oidc_provider.py tests/e2e/test_oidc_hardening.py tests/e2e/test_operations.py \
    tests/e2e/test_rejection.py tests/e2e/test_device_login.py tests/e2e/test_mfa.py \
    tests/e2e/test_rate_limits.py tests/e2e/test_suspension.py

section "Fuzzing: each cargo fuzz target on its seed corpus (fuzz/, docs/security.md)"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || fail "cargo install cargo-fuzz --locked failed (is crates.io reachable?)"
fi
FUZZ_SECS=${DGE_FUZZ_SECS:-15}
# The toolchain is stable: RUSTC_BOOTSTRAP lets cargo fuzz pass its -Z flags. Without a
# sanitizer (safe Rust): libFuzzer still catches every panic, debug assertions included.
# The dev profile of fuzz/Cargo.toml (opt-level 1) builds much faster than release.
FUZZ_FLAGS=(--dev --sanitizer none)
(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build "${FUZZ_FLAGS[@]}") || fail "cargo fuzz build failed"
FUZZ_SCRATCH=$(mktemp -d)
trap 'rm -rf "$FUZZ_SCRATCH"' EXIT
for target in $(cd fuzz && cargo fuzz list); do
    mkdir -p "$FUZZ_SCRATCH/$target"
    # New inputs go to the scratch folder; the committed seeds stay as they are.
    (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "${FUZZ_FLAGS[@]}" "$target" \
        "$FUZZ_SCRATCH/$target" "corpus/$target" -- -max_total_time="$FUZZ_SECS" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -n 12) \
        || fail "cargo fuzz run $target found a crash: the input is in fuzz/artifacts/$target/"
done
