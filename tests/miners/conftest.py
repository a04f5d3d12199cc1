"""Miner tests call tiny tensor ops thousands of times; on a busy 2-core machine torch's thread pool turns each
into a ~10 ms wait, so these tests run single-threaded (results do not depend on the thread count)."""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
