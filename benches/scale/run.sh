#!/usr/bin/env bash
# The scale benchmark: start → last frontend routed, RSS per frontend and command-line latency
# of the sozu binary with many frontends and certificates (sozu only). See doc/benchmarks.md.
#
#   benches/scale/run.sh            # 1,000 / 10,000 / 100,000 HTTP frontends, then 100,000
#                                   # HTTP + 10,000 HTTPS frontends with a certificate each
#   QUICK=1 benches/scale/run.sh    # the CI form: small counts, fails only on a broken scenario
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

if [[ -n ${QUICK:-} ]]; then
    export COUNTS=${COUNTS:-100 1000} CERTIFICATES=${CERTIFICATES:-100}
    export RESULTS_DIR=${RESULTS_DIR:-$(mktemp -d)}
fi
command -v curl >/dev/null || { echo "error: curl is needed (apt-get install curl)" >&2; exit 1; }
if [[ -z ${SOZU_BIN:-} ]]; then
    if [[ -n ${QUICK:-} ]]; then
        (cd "$ROOT" && cargo build --bin sozu)
        export SOZU_BIN=$ROOT/target/debug/sozu
    else
        (cd "$ROOT" && cargo build --release --bin sozu)
        export SOZU_BIN=$ROOT/target/release/sozu
    fi
fi
exec python3 -B "$HERE/scale.py"
