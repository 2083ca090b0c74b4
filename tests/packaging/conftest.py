from __future__ import annotations

import pytest
from debbuild import Debs, build_debs


@pytest.fixture(scope="session")
def debs(tmp_path_factory: pytest.TempPathFactory) -> Debs:
    """telemd's .debs, built once per session (skips without the build tools)."""
    return build_debs(tmp_path_factory)
