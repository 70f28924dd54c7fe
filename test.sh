#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, doctests and the end-to-end suite.
# The end-to-end tests drive real clients (curl, openssl, promtool, tmux, chromium); they are
# installed first when missing.
set -euo pipefail
cd "$(dirname "$0")"
.ci/install-test-tools
exec cargo test --workspace "$@"
