#!/usr/bin/env bash
# Builds and runs the Keyport desktop app (installs the Debian packages it needs first).
# Needs a desktop session with a Secret Service (GNOME, KDE with KeePassXC, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
exec cargo run -p keyport-app "$@"
