from __future__ import annotations

import shutil
from collections.abc import Iterator

import nspawn
import pytest
from debbuild import Debs, build_debs


@pytest.fixture(scope="session")
def debs(tmp_path_factory: pytest.TempPathFactory) -> Debs:
    """telemd's .debs, built once per session (skips without the build tools)."""
    return build_debs(tmp_path_factory)


@pytest.fixture(scope="module")
def machine(debs: Debs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[nspawn.Machine]:
    """A booted Debian 12 with the .debs at /mnt/shared, for one module's scenario."""
    reason = nspawn.missing()
    if reason:
        pytest.skip(reason)
    try:
        root = nspawn.ensure_root()
    except RuntimeError as exc:  # no mirror reachable: nothing to boot
        pytest.skip(f"cannot make the Debian 12 root in {nspawn.CACHE}: {exc}")
    shared = tmp_path_factory.mktemp("shared")
    for deb in (debs.telemd, debs.collector, debs.crashprobe):
        shutil.copy(deb, shared)
    booted = nspawn.Machine(root, shared, shared.parent / "console.log")
    try:
        yield booted
    finally:
        booted.stop()
