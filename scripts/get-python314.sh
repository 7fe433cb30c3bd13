#!/usr/bin/env bash
# A CPython 3.14 (it has sys.remote_exec, PEP 768) for the tests, on a Debian 12 machine whose own
# apt has none: setup.sh uses ../shared/tools/get-python314.sh when a checkout sits beside it, and
# this script otherwise (a clean clone anywhere).
#
# It asks Debian's unstable suite for python3.14 and everything it depends on (a newer glibc
# included) through an apt configuration of its own, so the host's sources and dpkg database stay
# untouched; unpacks the packages into a private prefix; and points the interpreter at the loader
# and libraries of that prefix with patchelf.
#
# Usage: bash scripts/get-python314.sh [DIR]   (the last line printed is the interpreter's path)
set -euo pipefail
home=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/peeka-python314}
prefix=$home/prefix
python=$prefix/usr/bin/python3.14
usable() { [ -x "$python" ] && "$python" -c 'import sys; assert hasattr(sys, "remote_exec")' 2>/dev/null; }
if usable; then echo "$python"; exit 0; fi

apt_dir=$home/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/none" "$prefix"
: > "$apt_dir/status"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian ${PEEKA_PY314_SUITE:-sid} main" \
  > "$apt_dir/sources.list"
apt_opts=(
  -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/none"
  -o "Dir::Etc::Parts=$apt_dir/none" -o "Dir::Etc::PreferencesParts=$apt_dir/none"
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::State::status=$apt_dir/status"
  -o "Dir::Cache::Archives=$apt_dir/archives" -o "APT::Install-Recommends=false"
  -o "Acquire::Languages=none" -o "APT::Sandbox::User=root" -o "APT::Architecture=amd64"
)
apt-get "${apt_opts[@]}" update -qq >&2
apt-get "${apt_opts[@]}" install -qq -y --download-only python3.14 python3.14-venv >/dev/null
for deb in "$apt_dir"/archives/*.deb; do dpkg-deb -x "$deb" "$prefix"; done
rm -f "$apt_dir"/archives/*.deb
command -v patchelf >/dev/null || apt-get install -qq -y patchelf >/dev/null
libs=$prefix/usr/lib/x86_64-linux-gnu
patchelf --set-interpreter "$libs/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$libs" "$python"
usable || { echo "python3.14 unpacked in $prefix does not run" >&2; exit 1; }
echo "$python"
