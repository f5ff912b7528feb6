#!/usr/bin/env bash
# The system packages meshlens's tests run for real (Debian names), in one
# list that both `make` and .ci/run read.
#
#   scripts/sysdeps.sh packages        print the Debian packages, one a line
#   scripts/sysdeps.sh check [--root] [COMMAND...]
#                                      fail, naming the packages to install and
#                                      the one apt-get command that does it, when
#                                      a command (default: all of them) is missing;
#                                      --root: also fail unless run as root
#
# Go tools (staticcheck, protoc-gen-go, protoc-gen-go-vtproto) are not here:
# go.mod pins them as tool directives and make builds them.
set -euo pipefail

# command package
deps=(
  "protoc protobuf-compiler"                         # make proto, make proto-check
  "promtool prometheus"                              # query, rules and metrics checks
  "prometheus prometheus"                            # a real Prometheus: rules, remote-write
  "amtool prometheus-alertmanager"                   # Alertmanager config checks
  "prometheus-alertmanager prometheus-alertmanager"  # a real Alertmanager: alert delivery
  "nats-server nats-server"                          # an external NATS cluster: HA tests
  "victoria-metrics victoria-metrics"                # the shared TSDB of the scale-out roles
  "chromium chromium"                                # the UI's browser tests
  "ip iproute2"                                      # network namespaces: lab, trace
  "nft nftables"                                     # the lab's real faults
  "fping fping"                                      # the agent footprint baseline
  "systemd-analyze systemd"                          # the systemd units' check (test/e2e/deploy)
  "systemd-sysusers systemd"                         # the sysusers file's check
  "unshare util-linux"                               # a read-only data dir (test/e2e/deploy)
)
# Not a command: the Go module proxy is reached over HTTPS.
extra_packages=(ca-certificates)

package_of() {
  local d
  for d in "${deps[@]}"; do
    if [ "${d%% *}" = "$1" ]; then
      echo "${d#* }"
      return
    fi
  done
  echo "sysdeps: no package known for command $1" >&2
  exit 2
}

case "${1:-}" in
packages)
  { for d in "${deps[@]}"; do echo "${d#* }"; done; printf '%s\n' "${extra_packages[@]}"; } | sort -u
  ;;
check)
  shift
  need_root=false
  if [ "${1:-}" = --root ]; then
    need_root=true
    shift
  fi
  cmds=("$@")
  if ((${#cmds[@]} == 0)); then
    for d in "${deps[@]}"; do cmds+=("${d%% *}"); done
  fi
  missing=() off_path=()
  for c in "${cmds[@]}"; do
    pkg=$(package_of "$c")
    command -v "$c" >/dev/null && continue
    # Installed, but in an sbin directory a non-root PATH often lacks.
    if [ -x "/usr/sbin/$c" ] || [ -x "/sbin/$c" ]; then
      off_path+=("$c")
    elif [[ ! " ${missing[*]} " =~ " $pkg " ]]; then
      missing+=("$pkg")
    fi
  done
  status=0
  if ((${#missing[@]})); then
    echo "missing system packages: ${missing[*]}" >&2
    sudo=sudo
    [ "$(id -u)" = 0 ] && sudo=
    echo "install them with:" >&2
    echo "  $sudo${sudo:+ }apt-get install -y --no-install-recommends ${missing[*]}" >&2
    status=1
  fi
  if ((${#off_path[@]})); then
    echo "installed but not on PATH: ${off_path[*]} (add /usr/sbin:/sbin to PATH)" >&2
    status=1
  fi
  if $need_root && [ "$(id -u)" != 0 ]; then
    echo "the end-to-end suites need root (network namespaces, raw sockets, nftables): run as root, as CI does" >&2
    status=1
  fi
  exit $status
  ;;
*)
  echo "usage: $0 packages | check [--root] [COMMAND...]" >&2
  exit 2
  ;;
esac
