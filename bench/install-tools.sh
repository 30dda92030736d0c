#!/usr/bin/env bash
# Installs what `npm run bench` needs beyond Node.js, from Debian's packages: nginx (the
# reference proxy_cache), wrk (the load generator) and redis-server (the service's shared tier).
# Skips what is already there, whichever package provides it.
set -euo pipefail
missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v redis-server >/dev/null || missing+=(redis-server)
if ((${#missing[@]} > 0)); then
  bash "$(dirname "$0")/../scripts/apt-install.sh" "${missing[@]}"
fi
