"""Run by __test__/python-package.test.mjs, which SIGKILLs this pytest once the hub's pid is in
$IOTHUB_TEST_PIDS: the hub must exit by itself (its stdin pipe closes with the process)."""

import os
import time


def test_hub_while_pytest_is_killed(iothub):
    with open(os.environ["IOTHUB_TEST_PIDS"], "a") as f:
        f.write(f"{iothub.pid}\n")
    time.sleep(120)  # killed long before
