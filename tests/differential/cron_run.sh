#!/bin/sh
# ctest's entry to the cron differential test: cron_run.sh DRIVER. Skips (77) without node or
# without cron-parser (scripts/install-deps.sh test installs both).
here=$(dirname "$0")
if ! command -v node >/dev/null 2>&1 || [ ! -d "$here/../cron-oracle/node_modules/cron-parser" ]; then
  echo "SKIPPED: node or tests/cron-oracle/node_modules/cron-parser is missing (scripts/install-deps.sh test)"
  exit 77
fi
exec node "$here/cron_run.js" "$@"
