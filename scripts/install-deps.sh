#!/usr/bin/env bash
# Installs what Keyport needs to build, run and test on Debian 12 / Ubuntu 22.04+:
# the Tauri/WebKitGTK stack, libdbus (keyring's Secret Service client), a headless desktop
# for tests (gnome-keyring, Xvfb, WebKitWebDriver), tauri-driver, and (with --test) the
# npm packages of the test OpenID provider.
# Idempotent: installs only what is missing. Uses sudo when not root.
set -euo pipefail

packages=(
  # build: Tauri v2 on Linux + keyring's Secret Service client
  build-essential pkg-config libssl-dev libdbus-1-dev
  libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev libsoup-3.0-dev libxdo-dev
  # run: a keychain and a session bus
  dbus dbus-x11 gnome-keyring libsecret-tools
  # tests: headless desktop session, notification sink, app window driver
  xvfb xauth python3-dbus python3-gi webkit2gtk-driver at-spi2-core openssl xclip
  # tests: the .deb's and the autostart entry's desktop files are checked with the validator;
  # xdotool finds the app's window (to close it as a window manager would)
  desktop-file-utils xdotool
  # tests: the real clients of the loopback helper (curl, Python requests, HTTPie, git)
  curl git python3-requests httpie
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-deps: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "${1:-}" = "--test" ]; then
  # Node runs the real OpenID provider of the OAuth tests (oidc-provider needs Node 20+;
  # Debian 12's own nodejs is 18, so a machine without node gets it and may warn).
  if ! command -v npm >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
  fi
  npm ci --prefix tests/oidc --no-audit --no-fund --loglevel=error >&2
  for c in clippy rustfmt; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
  # The WebDriver front for Tauri apps (the GUI test drives the real window through it).
  command -v tauri-driver >/dev/null 2>&1 || [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/tauri-driver" ] ||
    cargo install tauri-driver --locked --version '^2' >&2
fi
