"""telemd/collector/connections.py: the descriptor limit fitted to max_connections.

Each case runs in a child process, whose limits the test may lower for good.
The deadlines and the cap themselves are tested against a running collector
in tests/faults/test_slowloris.py.
"""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

FIT = """
import logging, resource, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))
from telemd.collector.connections import fit_descriptor_limit
print(fit_descriptor_limit({wanted}))
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def fit(soft: int, hard: int, wanted: int) -> list[str]:
    code = FIT.format(soft=soft, hard=hard, wanted=wanted)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return result.stdout.splitlines()


def hard_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1 << 20 if hard == resource.RLIM_INFINITY else hard


def test_the_soft_limit_is_raised_to_what_the_connections_need() -> None:
    if hard_limit() < 4096 + 64:
        pytest.skip(f"needs a hard descriptor limit of 4160; it is {hard_limit()}")
    assert fit(256, hard_limit(), 4096) == ["4096", str(4096 + 64)]


def test_a_hard_limit_too_low_lowers_the_cap_and_says_so() -> None:
    *warning, cap, soft = fit(256, 256, 4096)
    assert (cap, soft) == ("192", "256")
    assert warning == [
        "max_connections 4096 does not fit the descriptor limit 256 (LimitNOFILE=); serving 192"
    ]
