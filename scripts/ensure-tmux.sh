#!/bin/sh
# Makes sure tmux is installed (the CLI's terminal test drives the progress bar through it).
# Installs it with apt-get when running as root on a Debian-like machine (as CI does); otherwise
# says why it cannot and exits 1, so the test can skip with that reason.
set -u
command -v tmux >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ]; then echo "tmux is not installed and this is not root (cannot apt-get install it)"; exit 1; fi
if ! command -v apt-get >/dev/null 2>&1; then echo "tmux is not installed and there is no apt-get"; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends tmux >/dev/null 2>&1 ||
  { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends tmux >/dev/null 2>&1; } ||
  { echo "apt-get install tmux failed"; exit 1; }
command -v tmux >/dev/null 2>&1 || { echo "tmux still not found after apt-get install"; exit 1; }
