#!/usr/bin/env bash
# Builds Keyport's Debian package: the desktop app (keyport-app, with its desktop entry and
# icons) and the command line (keyport, keyport-cli) in /usr/bin, through the Tauri CLI
# from the page's npm packages (`tauri build --bundles deb`, offline). Optimized with
# --release (what to install), else a debug build (what the tests inspect). Prints the
# .deb's path as its last line.
# Usage: scripts/build-deb.sh [--release]     then: sudo apt install ./PATH.deb
set -euo pipefail
cd "$(dirname "$0")/.."
profile=debug
cargo_args=()
tauri_args=(--debug)
case "${1:-}" in
  --release) profile=release; cargo_args=(--release); tauri_args=() ;;
  "") ;;
  *) echo "usage: scripts/build-deb.sh [--release]" >&2; exit 2 ;;
esac
scripts/install-deps.sh >&2
scripts/build-ui.sh
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
# The CLI goes in the same package: the app's Use commands call `keyport helper key`.
cargo build --locked -p keyport-cli --bins "${cargo_args[@]}" >&2
files=$(printf '{"bundle":{"linux":{"deb":{"files":{"/usr/bin/keyport":"../target/%s/keyport","/usr/bin/keyport-cli":"../target/%s/keyport-cli"}}}}}' "$profile" "$profile")
rm -f target/"$profile"/bundle/deb/*.deb
ui/node_modules/.bin/tauri build "${tauri_args[@]}" --bundles deb --config "$files" -- --locked >&2
ls target/"$profile"/bundle/deb/*.deb
