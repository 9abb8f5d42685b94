"""pytest plugin (entry point ``pytest11``): ``--pss-bench-update`` for the regression helpers.

The helpers themselves live in :mod:`pss_bench.testing`.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pss-bench")
    group.addoption(
        "--pss-bench-update",
        action="store_true",
        default=False,
        help="Rewrite pss-bench regression baselines (assert_pq, assert_context_error) instead of comparing.",
    )


def pytest_configure(config: pytest.Config) -> None:
    from pss_bench.testing import configure

    configure(config.getoption("--pss-bench-update"), config.rootpath)


@pytest.fixture()
def pss_bench_update(request: pytest.FixtureRequest) -> bool:
    """Whether this run rewrites the regression baselines."""
    return bool(request.config.getoption("--pss-bench-update"))
