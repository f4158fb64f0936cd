#!/usr/bin/env bash
# Builds the window's page (ui/: TypeScript and Preact, bundled by Vite) into ui/dist, which
# the app embeds, unless it is up to date. Installs Node.js and npm from Debian when they are
# missing, and the page's npm packages (npm ci) when package-lock.json changed since the
# last install.
# Usage: scripts/build-ui.sh
set -euo pipefail
cd "$(dirname "$0")/../ui"
if ! command -v npm >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "build-ui: installing nodejs npm" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
# Up to date: nothing the page is built from is newer than its build. (A rebuild writes new
# files, and the app embeds ui/dist: an optimized app would be linked again for nothing.)
if [ -f dist/index.html ] &&
  [ -z "$(find src index.html vite.config.ts tsconfig.json package.json package-lock.json -newer dist/index.html -print -quit)" ]; then
  exit 0
fi
npm run --silent build >&2
