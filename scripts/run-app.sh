#!/usr/bin/env bash
# Builds and runs the Keyport desktop app (scripts/build-app.sh installs the Debian packages
# it needs first). Needs a desktop session with a Secret Service (GNOME, KDE with KeePassXC, ...).
# Arguments are passed to the app.
set -euo pipefail
cd "$(dirname "$0")/.."
app=$(scripts/build-app.sh | tail -n1)
exec "$app" "$@"
