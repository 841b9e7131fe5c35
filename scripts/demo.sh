#!/usr/bin/env bash
# Builds libbtm and runs the C demo (examples/c/thumbnails.c): a batch of
# "thumbnail" jobs with priorities and progress in a named group, a
# pass-through gathering them, one failing job and a stopped group, with
# every event printed as the host polls it.
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash examples/c/run.sh "$@"
