#!/usr/bin/env bash
# Installs what `npm run bench` needs beyond Node.js, from Debian's packages: nginx and Varnish
# (the reference caches), wrk (the load generator), redis-server (the service's shared tier) and
# taskset (util-linux; pins each server to its CPU).
# Skips what is already there, whichever package provides it.
set -euo pipefail
missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v varnishd >/dev/null || missing+=(varnish)
command -v taskset >/dev/null || missing+=(util-linux)
if ((${#missing[@]} > 0)); then
  bash "$(dirname "$0")/../scripts/apt-install.sh" "${missing[@]}"
fi
