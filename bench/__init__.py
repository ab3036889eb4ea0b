"""Speed and memory targets: scripts that write bench/results/*.json."""
