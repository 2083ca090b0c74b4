"""pstoreprobe's memory of the files it sent, on real files."""

from __future__ import annotations

import os
from pathlib import Path

from telemd_probes.pstore.sent import SentFiles, file_identity


def test_a_damaged_state_keeps_only_identities_and_forgets_files_gone(tmp_path: Path) -> None:
    kept = file_identity("dmesg-ramoops-0", b"Panic#1 Part1\n")
    gone = file_identity("dmesg-ramoops-1", b"Oops#1 Part1\n")
    path = tmp_path / "pstoreprobe.sent"
    damage = "not an identity\n\xff\xfe\n"
    path.write_bytes(f"{kept}\n{damage}{gone.upper()}\n{gone}\n".encode("latin-1"))
    sent = SentFiles(str(path))
    assert kept in sent and gone in sent and gone.upper() not in sent
    sent.keep_only([kept, file_identity("dmesg-ramoops-2", b"new")])
    assert sent.changed
    sent.save()
    assert path.read_text() == f"{kept}\n"
    assert not SentFiles(str(path)).changed


def test_an_identity_is_of_the_name_and_the_content() -> None:
    base = file_identity("dmesg-efi-1", b"Oops#1 Part1\n")
    assert file_identity("dmesg-efi-2", b"Oops#1 Part1\n") != base
    assert file_identity("dmesg-efi-1", b"Oops#1 Part1\n\n") != base
    assert file_identity("dmesg-efi-1", b"Oops#1 Part1\n") == base


def test_a_second_holder_of_the_lock_is_told_so(tmp_path: Path) -> None:
    path = str(tmp_path / "pstoreprobe.sent")
    first = SentFiles(path).lock()
    assert first is not None
    try:
        assert SentFiles(path).lock() is None
    finally:
        os.close(first)
    second = SentFiles(path).lock()
    assert second is not None
    os.close(second)
