#!/usr/bin/env bash
# Installs what `npm run bench` needs beyond Node.js, from Debian's packages: nginx (the
# reference proxy_cache) and wrk (the load generator). Skips what is already there, whichever
# package provides it.
set -euo pipefail
missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
if ((${#missing[@]} > 0)); then
  bash "$(dirname "$0")/../scripts/apt-install.sh" "${missing[@]}"
fi
