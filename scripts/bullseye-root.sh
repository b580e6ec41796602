#!/usr/bin/env bash
# Creates (once) and caches a Debian root with debootstrap; sourced by prebuild.sh and install-test.sh.
#   ensure_debian_root DIR ARCH "INCLUDE,PACKAGES" [foreign]
# DIR/.bitllm-ready marks a finished root (a half-made one is removed and made again).
# Env: BITLLM_DEBIAN_SUITE (default bullseye: glibc 2.31, the oldest suite deb.debian.org still
# serves), BITLLM_DEBIAN_MIRROR (default: the first deb.debian.org-style URI in apt's sources, else
# http://deb.debian.org/debian).

debian_suite="${BITLLM_DEBIAN_SUITE:-bullseye}"

debian_mirror() {
  if [ -n "${BITLLM_DEBIAN_MIRROR:-}" ]; then
    echo "$BITLLM_DEBIAN_MIRROR"
    return
  fi
  local uri
  uri="$(grep -hoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null |
    head -1 | tr -d ' ')" || true
  echo "${uri:-http://deb.debian.org/debian}"
}

ensure_debian_root() {
  local dir="$1" arch="$2" include="$3" foreign="${4:-}"
  if [ -f "$dir/.bitllm-ready" ]; then
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "debootstrap needs root to create $dir" >&2
    return 1
  fi
  if ! command -v debootstrap >/dev/null 2>&1; then
    echo "debootstrap not found; install with: apt-get install -y debootstrap" >&2
    return 1
  fi
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  local args=(--variant=minbase "--arch=$arch")
  [ -n "$include" ] && args+=("--include=$include")
  [ "$foreign" = foreign ] && args+=(--foreign)
  local log="$dir.debootstrap.log" t0=$SECONDS
  echo "== debootstrap $debian_suite ($arch${include:+, $include}${foreign:+, first stage only}) into $dir" >&2
  if ! debootstrap "${args[@]}" "$debian_suite" "$dir" "$(debian_mirror)" >"$log" 2>&1; then
    tail -20 "$log" >&2
    echo "debootstrap failed; full log: $log" >&2
    return 1
  fi
  touch "$dir/.bitllm-ready"
  echo "== debootstrap done in $((SECONDS - t0)) s" >&2
}
