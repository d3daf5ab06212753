"""Forked worker processes exit when the process that forked them is gone.

nnU-Net's data augmentation runs in processes forked by ``nnUNetv2_train`` (batchgenerators). When the trainer is
killed with SIGKILL they are never told to stop, and sit blocked on a queue nobody reads, ~700 MB each, for good.
After every fork the child starts a small daemon thread that checks once per second whether it was re-parented
(its parent died) and then exits. ``subprocess`` children are not affected (they exec another program).
"""

from __future__ import annotations

import os
import threading
import time

POLL_SECONDS = 1.0
_installed = False
_forking_pid = 0  # set just before each fork: the child reads the parent's pid from its copy of this variable


def _watch(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(0)  # the parent is gone: nobody will read what this worker produces
        time.sleep(POLL_SECONDS)


def _before_fork() -> None:
    global _forking_pid
    _forking_pid = os.getpid()


def _after_fork_in_child() -> None:
    # The parent's pid comes from before the fork: if the parent dies before this child is first scheduled,
    # os.getppid() would already name the new parent (init), and the death would go unnoticed.
    threading.Thread(target=_watch, args=(_forking_pid,), name="m2s-orphan-watch", daemon=True).start()


def install() -> None:
    """Register the fork hooks in this process (inherited by its forked children)."""
    global _installed
    if not _installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
        _installed = True
