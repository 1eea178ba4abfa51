#!/bin/sh
# ctest's entry to the differential test: run.sh DRIVER WORKDIR. Skips (77) without node.
if ! command -v node >/dev/null 2>&1; then
  echo "SKIPPED: node is not installed (scripts/install-deps.sh test installs Debian's nodejs)"
  exit 77
fi
exec node "$(dirname "$0")/run.js" "$@"
