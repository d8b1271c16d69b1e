"""The engine's guards in each of the three scripts (the same runs as tests/test_crash_safety.py):
divergence, resume with changed flags, an unwritable save folder, a full disk at the commit."""
import os

import pytest

from net.errors import AFFError
from test_crash_safety import (arm_full_disk, cifar_case, data, imagenet_case,  # noqa: F401
                               seg_case)
from utils import checkpoint as C
from utils import train as T
from utils.engine import Diverged

CASES = [cifar_case, seg_case, imagenet_case]
EPOCHS_FLAG = {cifar_case: '--num-epochs', seg_case: '--epochs', imagenet_case: '--num-epochs'}
ITERS = {cifar_case: 2, seg_case: 2, imagenet_case: 4}


def _stem(run):
    return run['record'][:-len('.json')]


def _log_text(run):
    path = run['csv'][:-len('.csv')] + '.log'
    with open(path) as f:
        return f.read()


@pytest.mark.parametrize('case', CASES)
def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_set(data, tmp_path, monkeypatch, case):
    run = case(data, tmp_path)
    real, calls = T.train_step, []

    def nan_in_epoch_1(*args):
        outs, losses = real(*args)
        calls.append(1)
        return outs, ([l * float('nan') for l in losses] if len(calls) == ITERS[case] + 1
                      else losses)

    monkeypatch.setattr(T, 'train_step', nan_in_epoch_1)
    with pytest.raises(Diverged, match='the loss is nan at epoch 1, iteration 1'):
        run['main'](run['argv'])
    assert C.read_set(_stem(run)).epoch == 0


@pytest.mark.parametrize('case', CASES)
def test_resume_replans_a_longer_schedule_and_refuses_another_batch(data, tmp_path, case):
    run = case(data, tmp_path)
    flag = EPOCHS_FLAG[case]
    assert run['main'](run['argv'] + [flag, '2']) == 0
    with pytest.raises(AFFError, match='images per update'):
        run['main'](run['argv'] + [flag, '3', '--batch-size', '2'] + run['resume'])
    assert run['main'](run['argv'] + [flag, '3'] + run['resume']) == 0
    text = _log_text(run)
    assert 'schedule re-planned from the checkpoint on purpose: %s 3 (was 2)' % flag in text
    assert C.read_set(_stem(run)).epoch == 2


@pytest.mark.parametrize('case', CASES)
def test_an_unwritable_save_folder_fails_before_training(data, tmp_path, case):
    run = case(data, tmp_path)
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    argv = list(run['argv'])
    argv[argv.index('--save-dir') + 1] = str(blocker / 'params')
    with pytest.raises(AFFError, match='--save-dir .* is not a writable folder'):
        run['main'](argv)
    assert not os.path.exists(run['csv'])


@pytest.mark.parametrize('case', CASES)
def test_a_full_disk_at_the_commit_is_one_line_and_keeps_the_previous_set(data, tmp_path,
                                                                           monkeypatch, case):
    first = case(data, tmp_path / 'a')
    arm_full_disk(monkeypatch, tmp_path, first['main'], first['argv'],
                  'written ' + os.path.basename(first['record']))         # epoch 1's commit
    run = case(data, tmp_path / 'b')
    with pytest.raises(AFFError, match='epoch 1 .* failed .*No space left.* intact'):
        run['main'](run['argv'])
    assert C.read_set(_stem(run)).epoch == 0
