#!/bin/sh
# System packages medchain's Python dependencies need to build:
# libp2p pins fastecdsa, which compiles from source against GMP (gcc + gmp.h).
# On Debian/Ubuntu as root we install them; otherwise we say exactly what to run.
set -e
need=""
command -v gcc >/dev/null 2>&1 || need="$need gcc"
if command -v gcc >/dev/null 2>&1; then
  printf '#include <gmp.h>\nint main(void){return 0;}\n' | gcc -x c -E - >/dev/null 2>&1 || need="$need libgmp-dev"
else
  need="$need libgmp-dev"
fi
python3 -c 'import sysconfig,os,sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"],"Python.h")) else 1)' 2>/dev/null || need="$need python3-dev"
# Optional: jemalloc keeps a node's memory flat under load (node/ops/memory.py).
if ! { /sbin/ldconfig -p 2>/dev/null || ldconfig -p 2>/dev/null; } | grep -q 'libjemalloc\.so\.2'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "medchain: installing libjemalloc2 (optional: keeps node memory flat)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q libjemalloc2 >/dev/null 2>&1 || \
      echo "medchain: libjemalloc2 not installed; nodes will use glibc malloc" >&2
  else
    echo "medchain: optional libjemalloc2 missing (sudo apt-get install libjemalloc2); nodes will use glibc malloc" >&2
  fi
fi
[ -z "$need" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "medchain: installing build dependencies:$need"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need >/dev/null || {
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need >/dev/null; }
  exit 0
fi
echo "medchain: missing build dependencies:$need" >&2
echo "  libp2p needs fastecdsa, which compiles against GMP. Install them first, e.g.:" >&2
echo "    sudo apt-get install$need        (Debian/Ubuntu)" >&2
echo "    sudo dnf install gcc gmp-devel python3-devel   (Fedora)" >&2
echo "    brew install gmp                  (macOS)" >&2
exit 1
