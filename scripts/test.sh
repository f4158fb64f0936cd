#!/usr/bin/env bash
# Runs every check and test Keyport has (this is what CI runs):
# the page's type check, build and unit tests (Vitest), formatting, clippy, rustdoc, the core's dependency rule, then unit and system tests against a real
# gnome-keyring, a real session bus and the real app window, inside a throw-away headless
# desktop session (tests/support/headless-session.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --test
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

echo "== cargo fmt --check" >&2
cargo fmt --all --check

# The app embeds the page's build (ui/dist), so it comes before anything compiles the app.
echo "== the page: TypeScript check, Vite build, Vitest" >&2
scripts/build-ui.sh
npm --prefix ui run --silent test

echo "== cargo clippy -D warnings" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== rustdoc -D warnings" >&2
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked -q -p keyport-core -p keyport-cli -p keyport-system-tests -p keyport-app

echo "== keyport-core must not depend on tauri, gtk or webkit" >&2
if cargo tree -p keyport-core -e normal,build --prefix none --locked | grep -iE '^(tauri|gtk|gdk|webkit|wry|tao)'; then
  echo "keyport-core depends on a desktop crate (listed above): keep the core free of Tauri" >&2
  exit 1
fi

echo "== build binaries (the app through scripts/build-app.sh, as people build it) and the .deb" >&2
scripts/build-app.sh >/dev/null
cargo build --workspace --bins --locked
scripts/build-deb.sh >/dev/null

echo "== tests (headless session: private D-Bus, unlocked gnome-keyring, Xvfb)" >&2
tests/support/headless-session.sh cargo test --workspace --locked -- --include-ignored
