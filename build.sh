#!/usr/bin/env bash
# Run by Vercel's Rust builder before it calls `cargo build --release --bin serverless`, and
# only there (it passes no cargo features, and the serverless entry needs the `vercel` one).
# Elsewhere this script does nothing: build with `cargo build --features vercel` instead.
set -euo pipefail
if [ -n "${VERCEL:-}" ]; then
  sed -i 's/^default = \[\]$/default = ["vercel"]/' Cargo.toml
  grep -q '^default = \["vercel"\]$' Cargo.toml
fi
