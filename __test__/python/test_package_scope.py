"""Run by __test__/python-package.test.mjs with `--iothub-scope=function`: each test gets a hub of
its own (the pids, one line each, go to $IOTHUB_TEST_PIDS)."""

import os

import pytest

seen = []


@pytest.mark.parametrize("n", [1, 2])
def test_a_hub_per_test(iothub, n):
    with open(os.environ["IOTHUB_TEST_PIDS"], "a") as f:
        f.write(f"{iothub.pid}\n")
    assert iothub.pid not in seen
    seen.append(iothub.pid)
    assert iothub.health()["devices"] == 0
