#!/usr/bin/env bash
# Install the system tools the monitoring tests need (Debian's prometheus: prometheus + promtool)
# when they are missing and this machine can: we are root and apt-get exists. Quiet: the apt output
# goes to ${TMPDIR:-/tmp}/hftmm-test-deps.log. Never fails the test run: when nothing can be
# installed, the tests that need the tools skip and say why.
#
# The package must not leave a server behind on :9090. Service starts during the install are
# refused by a policy-rc.d (Debian's hook for exactly that; kept when one is already there), and a
# server the package did start anyway (a real systemd) is stopped and disabled afterwards.
set -u
LOG=${TMPDIR:-/tmp}/hftmm-test-deps.log

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "test-deps: prometheus/promtool missing and not installable here (needs root and apt-get); those tests skip" >&2
  exit 0
fi

POLICY=/usr/sbin/policy-rc.d
OWN_POLICY=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$POLICY" && chmod 755 "$POLICY" && OWN_POLICY=1
fi

echo "test-deps: installing Debian's prometheus (log: $LOG)" >&2
{
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q -o DPkg::Lock::Timeout=120 --no-install-recommends prometheus ||
    { apt-get update -q && apt-get install -y -q -o DPkg::Lock::Timeout=120 --no-install-recommends prometheus; }
} >"$LOG" 2>&1
STATUS=$?

if [ "$OWN_POLICY" = 1 ]; then
  rm -f "$POLICY"
fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus >>"$LOG" 2>&1 || true
fi

if [ "$STATUS" != 0 ]; then
  echo "test-deps: could not install prometheus (see $LOG); the tests that need it skip" >&2
fi
exit 0
