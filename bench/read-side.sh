#!/usr/bin/env bash
# Benchmark (issue 7, item 1): the agent's read side. Prints, beside the targets and beside
# the old read path measured in the same run (a message to the owner task, which rescanned
# every profile after each message):
#   reading a valid credential        well under 1 microsecond, flat from 10 to 10,000 profiles
#   1 to 64 concurrent readers        scale with the cores
# Usage: bench/read-side.sh   (release build; no keychain or desktop needed: it runs the
# real agent over the in-memory store, so it measures the read side and nothing else).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
exec cargo bench -q -p keyport-core --bench read_side
