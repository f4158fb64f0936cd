#!/usr/bin/env bash
# Builds the Keyport desktop app (debug, or optimized with --release), installing the
# Debian packages it needs first, and prints the path of the built binary as its last line.
# The page (ui/) is built first (scripts/build-ui.sh): the app embeds ui/dist.
# Usage: scripts/build-app.sh [--release]
set -euo pipefail
cd "$(dirname "$0")/.."
profile=debug
args=()
case "${1:-}" in
  --release) profile=release; args=(--release) ;;
  "") ;;
  *) echo "usage: scripts/build-app.sh [--release]" >&2; exit 2 ;;
esac
scripts/install-deps.sh >&2
scripts/build-ui.sh
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
cargo build --locked -p keyport-app --bin keyport-app "${args[@]}" >&2
echo "$PWD/target/$profile/keyport-app"
