#!/usr/bin/env bash
# Installs the system packages the build and the tests need, when they are missing.
# Sourced by scripts/run and scripts/test; safe to run again (it only installs what is absent).
#   cmake        pingora-core builds zlib-ng through cmake
#   chromium     the loadtest report test renders the HTML report in a real headless browser
set -euo pipefail

_missing=()
_need() { command -v "$1" >/dev/null 2>&1 || _missing+=("$2"); }

ensure_deps() {
  _missing=()
  for spec in "$@"; do
    _need "${spec%%:*}" "${spec##*:}"
  done
  [ ${#_missing[@]} -eq 0 ] && return 0
  echo "installing missing packages: ${_missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${_missing[@]}" >/dev/null
}
