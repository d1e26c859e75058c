#!/usr/bin/env bash
# Streaming-read throughput and peak memory of ParticleSource (issue 2). Writes two stacks of random
# float32 images at D=128 (0.43 GB and 4.3 GB) into $1 (default /tmp/drgnfly-bench), evicts them from the
# page cache before every pass, and prints one table per size.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-/tmp/drgnfly-bench}"
mkdir -p "$dir"
cargo build --release -q -p drgnfly-io --example stream_bench
for n in 6554 65540; do
  echo "## $n images at D=128"
  target/release/examples/stream_bench "$dir" "$n" 128
done
