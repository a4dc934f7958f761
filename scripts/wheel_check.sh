#!/usr/bin/env bash
# The package as users get it: build the wheel, install it into a fresh venv without the `ml` extra
# (pinned by the lock file, requirements.txt) and run the board-side commands from it, outside the
# repository; then add the extra and run the walk-through's first commands. .ci/run calls this after
# `make test` (it needs .venv, from `make setup`, and firmware/c's host build).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WORK=$(mktemp -d "${TMPDIR:-/tmp}/k210-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
say() { printf '[wheel] %s\n' "$*"; }
die() { printf '[wheel] FAILED: %s\n' "$*" >&2; exit 1; }

# expect CODE CMD...: run CMD in $WORK/run; its exit code must be CODE; stderr kept in $WORK/err
expect() {
    local want=$1 code=0
    shift
    (cd "$WORK/run" && "$@" >"$WORK/out" 2>"$WORK/err") || code=$?
    [ "$code" = "$want" ] || { cat "$WORK/out" "$WORK/err" >&2; die "exit $code, not $want: $*"; }
    say "ok (exit $code): ${*#"$WORK/venv/bin/"}"
}
# The last command wrote nothing from a third-party library on stderr (its own progress lines may be there).
no_noise() {
    if grep -Eiq 'tensorflow|absl|onednn|cuda|warning|deprecat|xnnpack|I0000|W0000' "$WORK/err"; then
        cat "$WORK/err" >&2; die "third-party noise on stderr"
    fi
}
# ... and at most one line: the verdict or the error.
one_line_stderr() {
    local lines
    lines=$(wc -l <"$WORK/err")
    [ "$lines" -le 1 ] || { cat "$WORK/err" >&2; die "$lines lines on stderr, not one"; }
    no_noise
}

say "building the wheel"
.venv/bin/python -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/dist" . >"$WORK/build.log" 2>&1 \
    || { cat "$WORK/build.log" >&2; die "building the wheel"; }
rm -rf build
WHEEL=$(ls "$WORK"/dist/k210_deploy-*.whl)
make -s -C firmware/c host BUILD="$REPO/firmware/c/build-host"
RUNNER="$REPO/firmware/c/build-host/k210_runner_host --pty --exit-with-parent"

PY=$(.venv/bin/python -c 'import sys; print(sys._base_executable)')
"$PY" -m venv "$WORK/venv"
K210="$WORK/venv/bin/k210"
say "installing $(basename "$WHEEL") without extras"
"$WORK/venv/bin/python" -m pip install -q -c requirements.txt "$WHEEL"
"$WORK/venv/bin/python" -c 'import importlib.util as u, sys
heavy = [m for m in ("tensorflow", "nncase", "tflite", "onnx", "matplotlib") if u.find_spec(m)]
sys.exit(f"installed without the ml extra, yet present: {heavy}" if heavy else 0)'

mkdir -p "$WORK/run"
(cd tests && ../.venv/bin/python - "$WORK/run" <<'EOF'
import sys
from pathlib import Path

from boardfakes.arith_model import make_arith_kmodel
from flashdeploy_support import firmware_bin, kmodel_v4, kmodel_v5

out = Path(sys.argv[1])
(out / "m5.kmodel").write_bytes(kmodel_v5())
(out / "m4.kmodel").write_bytes(kmodel_v4())
(out / "fw.bin").write_bytes(firmware_bin())
(out / "arith.kmodel").write_bytes(make_arith_kmodel(version=5, input_len=784))  # the C runner's host build runs it
EOF
)

expect 0 "$K210" --version
expect 0 "$K210" inspect m5.kmodel
expect 0 "$K210" inspect m4.kmodel --json
expect 0 "$K210" flash m5.kmodel --dry-run
expect 0 "$K210" flash --firmware-bin fw.bin m4.kmodel --firmware maixpy --dry-run --json
expect 2 "$K210" flash m5.kmodel --firmware maixpy --dry-run
expect 0 "$K210" deploy m5.kmodel --dry-run
expect 0 "$K210" lint m4.kmodel
expect 0 "$K210" hil arith.kmodel --board-cmd "$RUNNER" --golden-board-cmd "$RUNNER" --upload --dataset random \
    --limit 20 --no-reference --connect-timeout 30
one_line_stderr
# What needs the extra says so in one line, exit 2.
expect 2 "$K210" hil m5.kmodel --board-cmd "$RUNNER" --dataset random --limit 2 --no-reference
one_line_stderr
grep -q "ml extra" "$WORK/err" || die "hil without nncase does not name the ml extra"
expect 2 "$K210" verify m5.kmodel --dataset random
one_line_stderr
expect 2 "$K210" board m5.kmodel
one_line_stderr

say "adding the ml extra"
"$WORK/venv/bin/python" -m pip install -q -c requirements.txt "$WHEEL[ml]"
expect 0 "$K210" train xo -o models
no_noise
expect 0 "$K210" compile models/xo_mlp.keras --calib 100 -o xo.kmodel
no_noise
expect 0 "$K210" verify xo.kmodel --reference models/xo_mlp.keras --dataset xo --limit 200
no_noise
expect 0 "$K210" hil xo.kmodel --virtual --upload --dataset xo --limit 50 --reference models/xo_mlp.keras
no_noise
say "the wheel works with and without the ml extra"
