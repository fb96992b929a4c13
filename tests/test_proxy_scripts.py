"""The install/restore shell scripts lbgen runs inside the proxy container, run here with a real sh
against a temp dir: the swap, the validation and the restore, and that values never become code."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lbgen.proxies.driver import INSTALL_SCRIPT, RESTORE_SCRIPT


def install(path: Path, mode: str, *validator: str, swap: str = "rename") -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", INSTALL_SCRIPT, "sh", str(path), mode, swap, *validator],
                          capture_output=True, text=True)


def restore(path: Path, swap: str = "rename") -> None:
    subprocess.run(["sh", "-c", RESTORE_SCRIPT, "sh", str(path), swap], check=True)


def files(d: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(d.iterdir())}


@pytest.mark.parametrize("mode", ["candidate", "inplace"])
def test_valid_config_is_swapped_in_with_the_previous_kept(tmp_path, mode):
    live = tmp_path / "lbgen.conf"
    live.write_text("old\n")
    (tmp_path / "lbgen.conf.lbgen-new").write_text("new\n")
    result = install(live, mode, "true")
    assert result.returncode == 0, result.stdout
    assert files(tmp_path) == {"lbgen.conf": "new\n", "lbgen.conf.lbgen-prev": "old\n"}
    restore(live)
    assert files(tmp_path) == {"lbgen.conf": "old\n"}


@pytest.mark.parametrize("mode", ["candidate", "inplace"])
def test_rejected_config_leaves_the_live_file_byte_identical(tmp_path, mode):
    live = tmp_path / "lbgen.conf"
    live.write_bytes(b"old config\n\x00bytes")
    (tmp_path / "lbgen.conf.lbgen-new").write_text("broken\n")
    validator = ["sh", "-c", "echo 'nginx: [emerg] unknown directive \"bogus\"' >&2; exit 1", "v"]
    result = install(live, mode, *validator)
    assert result.returncode == 3
    assert "[emerg] unknown directive" in result.stdout
    assert live.read_bytes() == b"old config\n\x00bytes"
    assert not (tmp_path / "lbgen.conf.lbgen-new").exists() or mode == "inplace"
    assert not (tmp_path / "lbgen.conf.lbgen-prev").exists()


@pytest.mark.parametrize("mode", ["candidate", "inplace"])
@pytest.mark.parametrize("swap", ["rename", "overwrite"])
def test_the_new_config_can_come_on_stdin_and_is_validated_in_the_same_run(tmp_path, mode, swap):
    """`--stdin N`: the config is delivered by the same exec that validates it (one round trip to the engine):
    written 0644, validated and swapped in; a refused one leaves the live file as it was; one that cannot be
    written, or that comes short of N bytes, is exit 5 with nothing changed."""
    live = tmp_path / "lbgen.conf"
    live.write_text("old\n")
    live.chmod(0o600)
    seen = tmp_path / "seen"
    check = f'cat "$1" > {seen}' if mode == "candidate" else f'cat {live} > {seen}'
    data = b"new\n" + bytes(range(1, 256)) * 400  # any bytes, more than a pipe's buffer

    def run(*validator: str, path: Path = live, size: int = len(data)) -> subprocess.CompletedProcess:
        return subprocess.run(["sh", "-c", INSTALL_SCRIPT, "sh", str(path), mode, swap, "--stdin", str(size),
                               *validator], input=data, capture_output=True)

    result = run("sh", "-c", check, "v")
    assert result.returncode == 0, result.stdout
    assert live.read_bytes() == seen.read_bytes() == data
    assert (tmp_path / "lbgen.conf.lbgen-prev").read_text() == "old\n"
    assert not (tmp_path / "lbgen.conf.lbgen-new").exists()
    assert live.stat().st_mode & 0o777 == (0o644 if swap == "rename" else 0o600)  # overwrite keeps the inode
    result = run("sh", "-c", "echo refused >&2; exit 1", "v")
    assert (result.returncode, result.stdout.strip()) == (3, b"refused") and live.read_bytes() == data
    result = run("true", size=len(data) + 1)  # the stream ended early
    assert result.returncode == 5 and live.read_bytes() == data
    assert not (tmp_path / "lbgen.conf.lbgen-new").exists()
    result = run("true", path=tmp_path / "no-such-dir" / "lbgen.conf")
    assert result.returncode == 5 and b"no-such-dir" in result.stdout + result.stderr


@pytest.mark.parametrize("shell", ["sh", "busybox"])
def test_two_files_on_stdin_are_split_at_n_bytes_and_installed_together(tmp_path, shell):
    """nginx's config and its main-context file in one stream: the first N bytes are the config's."""
    argv0 = ["sh"] if shell == "sh" else ["busybox", "sh"]
    if shell == "busybox" and not shutil.which("busybox"):
        pytest.skip("busybox is not installed here")
    conf, main = tmp_path / "lbgen.conf", tmp_path / "main.conf"
    conf.write_text("old conf\n")
    main.write_text("old main\n")
    first, second = b"c" * 70000 + b"\n", b"m" * 90000 + b"\n"
    result = subprocess.run([*argv0, "-c", INSTALL_SCRIPT, "sh", str(conf), "inplace", "rename", "--stdin",
                             str(len(first)), "--also", str(main), "rename", "true"], input=first + second,
                            capture_output=True)
    assert result.returncode == 0, result.stderr
    assert (conf.read_bytes(), main.read_bytes()) == (first, second)
    assert (tmp_path / "main.conf.lbgen-prev").read_text() == "old main\n"


def test_candidate_mode_validates_the_new_file_itself(tmp_path):
    live = tmp_path / "haproxy.cfg"
    (tmp_path / "haproxy.cfg.lbgen-new").write_text("good\n")
    seen = tmp_path / "seen"
    result = install(live, "candidate", "sh", "-c", f'cat "$1" > {seen}', "v")
    assert result.returncode == 0
    assert seen.read_text() == "good\n"
    assert live.read_text() == "good\n"
    assert not (tmp_path / "haproxy.cfg.lbgen-prev").exists()  # there was no previous config


def test_first_install_rejected_leaves_no_file(tmp_path):
    live = tmp_path / "lbgen.conf"
    (tmp_path / "lbgen.conf.lbgen-new").write_text("broken\n")
    assert install(live, "inplace", "false").returncode == 3
    assert not live.exists()


def test_hostile_path_is_data_not_code(tmp_path):
    weird = tmp_path / "a b;$(touch pwned)`touch pwned2`"
    weird.mkdir()
    live = weird / "x.conf"
    (weird / "x.conf.lbgen-new").write_text("new\n")
    assert install(live, "inplace", "true").returncode == 0
    assert live.read_text() == "new\n"
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists() and not Path("pwned2").exists()


@pytest.mark.parametrize("mode", ["candidate", "inplace"])
def test_overwrite_keeps_the_inode_of_a_mounted_file(tmp_path, mode):
    """A single-file bind mount cannot be renamed over: the new content is written into the same inode,
    so the host's file holds it; the previous content is kept beside it and restored the same way."""
    live = tmp_path / "haproxy.cfg"
    live.write_text("old\n")
    inode = live.stat().st_ino
    (tmp_path / "haproxy.cfg.lbgen-new").write_text("new\n")
    assert install(live, mode, "true", swap="overwrite").returncode == 0
    assert live.stat().st_ino == inode
    assert files(tmp_path) == {"haproxy.cfg": "new\n", "haproxy.cfg.lbgen-prev": "old\n"}
    restore(live, "overwrite")
    assert live.stat().st_ino == inode
    assert files(tmp_path) == {"haproxy.cfg": "old\n"}


@pytest.mark.parametrize("mode", ["candidate", "inplace"])
def test_overwrite_rejected_leaves_the_mounted_file_byte_identical(tmp_path, mode):
    live = tmp_path / "lbgen.conf"
    live.write_bytes(b"old config\n\x00bytes")
    inode = live.stat().st_ino
    (tmp_path / "lbgen.conf.lbgen-new").write_text("broken\n")
    result = install(live, mode, "sh", "-c", "echo '[emerg] bad' >&2; exit 1", "v", swap="overwrite")
    assert result.returncode == 3 and "[emerg] bad" in result.stdout
    assert live.read_bytes() == b"old config\n\x00bytes" and live.stat().st_ino == inode


@pytest.mark.parametrize("shell", ["dash", "busybox"])
def test_the_scripts_run_under_dash_and_busybox_sh(tmp_path, shell):
    """The Debian images' /bin/sh is dash, the Alpine images' is BusyBox sh."""
    import shutil

    argv0 = [shell] if shell == "dash" else ["busybox", "sh"]
    if shutil.which(argv0[0]) is None:
        pytest.skip(f"{argv0[0]} is not installed here (the Alpine replica's integration test runs it)")
    live = tmp_path / "lbgen.conf"
    live.write_text("old\n")
    for swap in ("rename", "overwrite"):
        (tmp_path / "lbgen.conf.lbgen-new").write_text(f"new {swap}\n")
        out = subprocess.run([*argv0, "-c", INSTALL_SCRIPT, "sh", str(live), "candidate", swap, "true"],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert live.read_text() == f"new {swap}\n"
