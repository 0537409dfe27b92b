#!/bin/sh
# The browser tests (tests/e2e/test_web.py) drive Debian's Chromium headless
# with Playwright. Playwright's own browser download does not work offline, so
# we use the system's: /usr/bin/chromium (or $MEDCHAIN_CHROMIUM).
set -e
browser="${MEDCHAIN_CHROMIUM:-/usr/bin/chromium}"
[ -x "$browser" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "medchain: installing chromium for the browser tests"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null || {
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
  exit 0
fi
echo "medchain: the browser tests need Chromium at $browser" >&2
echo "    sudo apt-get install chromium     (Debian/Ubuntu), or set MEDCHAIN_CHROMIUM=/path/to/chromium" >&2
exit 1
