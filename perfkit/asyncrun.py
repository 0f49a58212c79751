"""Run a coroutine to completion from synchronous code, also where an event loop already runs.

Inside Jupyter (whose kernel runs a loop) ``asyncio.run`` refuses to start;
the coroutine then gets a fresh loop on a helper thread. Its result or its
exception comes back to the caller either way.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_coroutine(
    factory: Callable[[], Coroutine[Any, Any, T]], *, fresh_thread: bool = False
) -> T:
    """``asyncio.run(factory())``; on a helper thread if a loop runs here or ``fresh_thread``."""
    if not fresh_thread:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(factory())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(factory())
        except BaseException as exc:  # handed back to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name="perfkit-asyncio")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
