#!/usr/bin/env bash
# Sets up and builds stalltrace, then records a small asyncio HTTP service
# (scripts/demo_app.py) whose profile handler blocks the event loop with
# time.sleep(0.3), and prints stalltrace's report on it.
#
#   bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

# The real interpreter, not a wrapper script (a pyenv shim is a bash script
# that would be recorded, and exec'd, on the way).
python=$(python3 -c 'import sys; print(sys.executable)')

list_dumps() { find /tmp -maxdepth 1 -name 'stalltrace-demo.*.dump' 2>/dev/null | sort; }
before=$(list_dumps)

echo
echo "demo: running scripts/demo_app.py under stalltrace:"
echo "      build/analyzer/stalltrace run -o /tmp/stalltrace-demo.%p.dump -- $python scripts/demo_app.py"
echo
build/analyzer/stalltrace run -o /tmp/stalltrace-demo.%p.dump -- "$python" scripts/demo_app.py

dump=$(comm -13 <(printf '%s\n' "$before") <(list_dumps) | tail -n 1)
if [ -z "$dump" ]; then
    echo "demo: no dump was written to /tmp/stalltrace-demo.*.dump" >&2
    exit 1
fi
echo
echo "demo: the full report (build/analyzer/stalltrace report $dump):"
echo
build/analyzer/stalltrace report "$dump"
echo
echo "demo: JSON for scripts and CI: build/analyzer/stalltrace report --format json $dump"
