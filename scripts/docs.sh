#!/usr/bin/env bash
# The Rust API reference: rustdoc of the workspace's crates, warnings are errors (broken links, bare URLs).
#   scripts/docs.sh        # then open target/doc/pmg/index.html
# The JavaScript API is documented in web/README.md and typed in web/src/index.d.ts (checked by tsc).
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -D warnings" cargo doc --no-deps --workspace --lib
echo "docs: ${CARGO_TARGET_DIR:-target}/doc/pmg/index.html"
