"""Checks on the processes utils.launch started, from its --pid-file (test_launch.py,
test_train_imagenet.py)."""
import os
import signal
import time


def stat(pid):
    """(state, pgrp) of a process, None when it does not exist.  A zombie counts as gone: it
    has terminated and only waits to be reaped by its (new) parent."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return None if fields[0] in ('Z', 'X') else (fields[0], int(fields[2]))


def group_members(pgid):
    members = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            st = stat(int(entry))
            if st is not None and st[1] == pgid:
                members.append(int(entry))
    return members


def read_pids(path):
    with open(path) as f:
        rows = [line.split() for line in f if line.strip()]
    return [(role, index, int(pid)) for role, index, pid, _host in rows]


def assert_all_gone(pid_file, expected=None):
    """No process and no process-group member started by the launcher is left (zombies waiting
    for init to reap them are given a moment)."""
    rows = read_pids(pid_file)
    if expected is not None:
        assert sorted(r for r, _, _ in rows) == sorted(expected)
    end = time.monotonic() + 3
    while True:
        left = {pid: group_members(pid) for _, _, pid in rows}
        left = {pid: members for pid, members in left.items() if members or stat(pid)}
        if not left or time.monotonic() > end:
            break
        time.sleep(0.1)
    assert not left, 'processes left running (group id: members): %s' % left


def kill_leftovers(pid_file):
    """Last resort after a failed test: SIGKILL the groups the launcher reported."""
    if not os.path.exists(pid_file):
        return
    for _, _, pid in read_pids(pid_file):
        st = stat(pid)
        if st is not None and st[1] == pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
