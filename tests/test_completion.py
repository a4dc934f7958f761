"""`k210 completion bash|zsh`: scripts the shells accept, that complete subcommands and today's spellings."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest


def _complete(script: str, words: list[str]) -> list[str]:
    """What bash offers for the last word of `words` (the script's function run as bash would run it)."""
    line = " ".join(words)
    quoted = [shlex.quote(w) for w in words]
    program = (f"{script}\nCOMP_WORDS=({' '.join(quoted)}); COMP_CWORD={len(words) - 1}; "
               f"COMP_LINE={shlex.quote(line)}; COMP_POINT={len(line)}; "
               f"_shtab_k210 k210 {quoted[-1]} {quoted[-2]}; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_bash_script_is_valid_and_completes(cli, tmp_path):
    result = cli("completion", "bash")
    assert result.code == 0 and result.err == ""
    script = tmp_path / "k210.bash"
    script.write_text(result.out)
    check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "complete" in result.out and "_shtab_k210" in result.out
    assert _complete(result.out, ["k210", "fla"]) == ["flash"]
    assert _complete(result.out, ["k210", "hil", "m.kmodel", "--sil"]) == ["--silence-timeout"]
    offered = _complete(result.out, ["k210", "deploy", "--"])
    assert "--reply-timeout" in offered and "--json-out" in offered
    assert not {"--timeout", "--kmodel", "--runner"} & set(offered)  # old spellings work but are not offered
    assert _complete(result.out, ["k210", "completion", ""]) == ["bash", "zsh"]


def test_zsh_script_is_made_and_valid(cli, tmp_path):
    result = cli("completion", "zsh")
    assert result.code == 0 and result.out.startswith("#compdef k210")
    assert "--silence-timeout" in result.out and "--patience" not in result.out
    script = tmp_path / "_k210"
    script.write_text(result.out)
    zsh = shutil.which("zsh")
    if zsh is None:  # make setup installs zsh (scripts/bootstrap.sh); under CI a skip is a failure
        pytest.skip("zsh is not installed: run make setup")
    check = subprocess.run([zsh, "-n", str(script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("shell", ["fish", ""])
def test_other_shells_are_a_usage_error(cli, shell):
    result = cli("completion", shell)
    assert result.code == 2 and "invalid choice" in result.err
