#!/usr/bin/env bash
# Installs the local AWS test server (moto, pinned in requirements.txt) into a venv, idempotently:
#   bash tests/moto/install.sh
# Prints nothing when the venv already matches requirements.txt; exits non-zero with a message when
# it cannot install. The venv is /root/.cache/paranix-moto-venv (or $PARANIX_MOTO_VENV); the Rust
# test harness (tests/src/moto.rs) runs sdk/moto/paranix_moto.py with its python.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=${PARANIX_MOTO_VENV:-/root/.cache/paranix-moto-venv}
requirements="$here/requirements.txt"
stamp="$venv/.paranix-requirements.sha256"

fail() {
  echo "tests/moto/install.sh: $*" >&2
  exit 1
}

[ -f "$requirements" ] || fail "missing $requirements"
want=$(sha256sum "$requirements" | cut -d' ' -f1)
moto_version=$(sed -n 's/^moto\[server\]==\([^[:space:]]*\).*/\1/p' "$requirements")
[ -n "$moto_version" ] || fail "no moto[server]==VERSION line in $requirements"

installed() {
  [ -x "$venv/bin/python" ] &&
    [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] &&
    "$venv/bin/python" -c "import sys, moto; sys.exit(moto.__version__ != '$moto_version')" 2>/dev/null
}

installed && exit 0

command -v python3 >/dev/null 2>&1 || fail "python3 is not installed (needed for the moto venv)"
mkdir -p "$(dirname "$venv")"
# One installer at a time (parallel CI jobs share the venv); the loser finds it installed.
exec 9>"$venv.lock"
flock 9
installed && exit 0

echo "installing moto $moto_version into $venv (about a minute)" >&2
if ! "$venv/bin/python" -c "" 2>/dev/null; then
  python3 -m venv --clear "$venv" || fail "python3 -m venv $venv failed (Debian/Ubuntu: apt-get install python3-venv)"
fi
rm -f "$stamp"
log=$(mktemp)
if ! "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  fail "pip install -r $requirements into $venv failed (see above)"
fi
rm -f "$log"
"$venv/bin/python" -c "import sys, moto; sys.exit(moto.__version__ != '$moto_version')" ||
  fail "moto $moto_version is not importable from $venv after installing"
echo "$want" >"$stamp"
