"""The engine's guards (utils/engine.py, utils/checkpoint.py) through the three scripts: divergence,
bad learning rates and flags, resume validation, unwritable folders, a full disk, leftovers."""
import glob
import hashlib
import os

import mxnet as mx
import numpy as np
import pytest

import train_cifar
import train_imagenet
import train_seg
from net.errors import AFFError, CheckpointError
from utils import checkpoint as C
from utils import data as D
from utils import train as T
from utils.cli import run_main
from utils.data import imagenet as I
from utils.engine import EXIT_DIVERGED, Diverged
from utils.history import read_csv
from test_crash_safety import arm_full_disk

NAME = 'cifar10-ASKCFuse-resnet-8-c-1-s-1'


@pytest.fixture(scope='module')
def cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp('engine-cifar')
    rng = np.random.RandomState(0)
    for train, n in ((True, 64), (False, 32)):
        D.write_cifar(str(root), 'cifar10', train,
                      rng.randint(0, 256, size=(n, 32, 32, 3), dtype=np.uint8),
                      rng.randint(0, 10, size=n))
    return str(root)


def argv(cifar, out, *extra):
    return ['--dataset', 'cifar10', '--data-dir', cifar, '--skip-checksum', '--gpus', '', '-j', '0',
            '--model', 'resnet', '--askc-type', 'ASKCFuse', '--blocks', '1', '--channel-times', '1',
            '--batch-size', '32', '--num-epochs', '2', '--warmup-epochs', '0',
            '--logging-dir', str(out / 'logs'), '--save-dir', str(out / 'params'),
            '--save-plot-dir', str(out / 'logs')] + list(extra)


def last(out, ext='params'):
    return str(out / 'params' / ('%s-last.%s' % (NAME, ext)))


def log_text(out):
    with open(str(out / 'logs' / ('train_%s.log' % NAME))) as f:
        return f.read()


def digest(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def one_error_line(capsys, main, args, *words, code=2):
    with pytest.raises(SystemExit) as e:
        run_main(main, args)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert e.value.code == code and len(lines) == 1 and lines[0].startswith('error: '), err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------- divergence
def test_a_diverging_run_stops_with_its_own_status_and_keeps_the_checkpoints(cifar, tmp_path,
                                                                             capsys):
    assert train_cifar.main(argv(cifar, tmp_path)) == 0
    before = {p: digest(p) for p in glob.glob(str(tmp_path / 'params' / '*'))}
    line = one_error_line(capsys, train_cifar.main,
                          argv(cifar, tmp_path, '--num-epochs', '4', '--lr', '1e6',
                               '--resume-from', last(tmp_path)),
                          'not finite', 'epoch 2', 'learning rate 1e+06', '--lr',
                          code=EXIT_DIVERGED)
    assert 'nothing saved' in line
    after = {p: digest(p) for p in glob.glob(str(tmp_path / 'params' / '*'))}
    assert after == before                  # no checkpoint from non-finite weights
    assert [r['epoch'] for r in read_csv(str(tmp_path / 'logs' / ('train_%s.csv' % NAME)))] == [0, 1]


def test_a_non_finite_loss_stops_at_its_iteration(cifar, tmp_path, monkeypatch):
    real = T.train_step
    calls = []

    def nan_at_third(model, loss_fn, trainer, xs, targets, batch_size):
        outs, losses = real(model, loss_fn, trainer, xs, targets, batch_size)
        calls.append(1)
        return outs, ([l * float('nan') for l in losses] if len(calls) == 3 else losses)

    monkeypatch.setattr(T, 'train_step', nan_at_third)
    with pytest.raises(Diverged, match='the loss is nan at epoch 1, iteration 1'):
        train_cifar.main(argv(cifar, tmp_path))
    assert C.read_set(last(tmp_path)[:-7]).epoch == 0


@pytest.mark.parametrize('lr', ['nan', 'inf', '-0.1', '0'])
def test_learning_rates_that_cannot_train_are_refused(cifar, tmp_path, capsys, lr):
    one_error_line(capsys, train_cifar.main, argv(cifar, tmp_path, '--lr', lr), '--lr')
    one_error_line(capsys, train_seg.main, ['--dataset', 'synthetic-stopsign', '--lr', lr], '--lr')
    one_error_line(capsys, train_imagenet.main, ['--model', 'resnet', '--lr', lr], '--lr')
    assert not os.path.exists(str(tmp_path / 'params'))


# ----------------------------------------------------------------------------- flags
@pytest.mark.parametrize('main,args,words', [
    (train_cifar.main, ['--mixup-alpha', '0'], ['--mixup-alpha']),
    (train_cifar.main, ['--mixup-alpha', '-1'], ['--mixup-alpha']),
    (train_cifar.main, ['--seed', '-1'], ['--seed']),
    (train_cifar.main, ['--channel-times', '0'], ['--channel-times']),
    (train_cifar.main, ['--lr-decay-epoch', 'a,b'], ['--lr-decay-epoch']),
    (train_cifar.main, ['--askc-type', 'ASKCFuse', '--start-layer', '99'], ['--start-layer 99']),
    (train_imagenet.main, ['--lr-decay-epoch', 'a,b'], ['--lr-decay-epoch']),
    (train_imagenet.main, ['--model', 'resnet', '--kv-store', 'bogus'], ['--kv-store', 'dist_sync']),
    (train_imagenet.main, ['--model', 'resnet', '--askc-type', 'ASKCFuse', '--start-layer', '99'],
     ['--start-layer 99']),
    (train_imagenet.main, ['--model', 'resnet', '--num-epochs', '5', '--resume-epoch', '5'],
     ['--resume-epoch 5']),
    (train_imagenet.main, ['--mixup-alpha', '0'], ['--mixup-alpha']),
    (train_seg.main, ['--dataset', 'synthetic-stopsign', '--seed', '-3'], ['--seed']),
])
def test_bad_flags_are_one_line_where_they_are_parsed(capsys, main, args, words):
    one_error_line(capsys, main, args, *words)


def test_gpus_fall_back_to_the_cpu_when_none_is_visible(cifar, tmp_path):
    args = argv(cifar, tmp_path, '--num-epochs', '1')
    args[args.index('--gpus') + 1] = '0'
    assert train_cifar.main(args) == 0
    assert 'WARNING: no GPU visible to MXNet: --gpus 0 falls back to the CPU' in log_text(tmp_path)


def test_a_run_of_one_update_works(cifar, tmp_path):
    for mode in ('--cosine',):
        assert train_cifar.main(argv(cifar, tmp_path, mode, '--batch-size', '64',
                                     '--num-epochs', '1')) == 0
    for mode in ('cosine', 'poly', 'linear'):
        assert T.lr_schedule(mode, 0.1, 1, 1)(1) == pytest.approx(0.1)
        sched = T.lr_schedule(mode, 0.1, 2, 1, warmup_epochs=1)
        # GluonCV's LRSequential: update 1 is already past a one-update warmup (whose rate 0
        # belongs to update 0), so both updates run at the base rate
        assert [sched(1), sched(2)] == pytest.approx([0.1, 0.1])


# ----------------------------------------------------------------------------- resume
def test_changed_schedule_flags_are_replanned_and_said(cifar, tmp_path):
    assert train_cifar.main(argv(cifar, tmp_path, '--cosine')) == 0
    assert train_cifar.main(argv(cifar, tmp_path, '--cosine', '--num-epochs', '4', '--wd', '1e-3',
                                 '--resume-from', last(tmp_path))) == 0
    text = log_text(tmp_path)
    assert 'schedule re-planned from the checkpoint on purpose: --num-epochs 4 (was 2)' in text
    assert 'WARNING: flags differ' in text and '--wd 0.001 (was 0.0001)' in text
    rows = read_csv(str(tmp_path / 'logs' / ('train_%s.csv' % NAME)))
    sched = T.lr_schedule('cosine', 0.2, 4, 2)
    # the resumed epochs follow the new 4-epoch schedule from update 4 on (not 0: the old
    # scheduler pickled in .states is not used)
    assert [r['lr'] for r in rows[2:]] == pytest.approx([sched(6), sched(8)])
    assert rows[-1]['lr'] == pytest.approx(0.0) and rows[2]['lr'] > 1e-3  # the old one ended at 0


def test_a_changed_batch_is_refused_on_resume(cifar, tmp_path, capsys):
    assert train_cifar.main(argv(cifar, tmp_path, '--num-epochs', '1')) == 0
    one_error_line(capsys, train_cifar.main,
                   argv(cifar, tmp_path, '--batch-size', '16', '--resume-from', last(tmp_path)),
                   'images per update', '--batch-size')


def test_the_trainer_keeps_its_own_optimizer_settings_when_states_load(tmp_path):
    net = mx.gluon.nn.Dense(3, in_units=4)
    net.initialize()
    def trainer(wd):
        return T.make_trainer(net, T.lr_schedule('cosine', 0.1, 2, 3), 0.1, wd, 0.9)
    a = trainer(1e-4)
    for _ in range(4):
        with mx.autograd.record():
            loss = net(mx.nd.ones((2, 4))).sum()
        loss.backward()
        a.step(2)
    a.save_states(str(tmp_path / 's'))
    b = trainer(1e-3)
    T.load_trainer_states(b, str(tmp_path / 's'))
    assert b._optimizer.wd == 1e-3 and b._optimizer.num_update == 4
    assert b._optimizer.lr_scheduler is not a._optimizer.lr_scheduler
    assert sorted(b._updaters[0].states) == [0, 1]


def test_another_models_or_garbled_states_are_named(cifar, tmp_path, capsys):
    assert train_cifar.main(argv(cifar, tmp_path, '--num-epochs', '1')) == 0
    other = tmp_path / 'other'
    assert train_cifar.main(argv(cifar, other, '--num-epochs', '1', '--channel-times', '2')) == 0
    # train_imagenet's official flags take any .params/.states pair: the states are checked
    rec = tmp_path / 'rec'
    rng = np.random.RandomState(0)
    data = []
    for split in ('train', 'val'):
        data += list(I.write_tiny_rec(str(rec / split), [rng.randint(0, 256, (36, 36, 3), np.uint8)
                                                         for _ in range(8)], np.zeros(8)))
    base = ['--use-rec', '--rec-train', data[0], '--rec-train-idx', data[1], '--rec-val', data[2],
            '--rec-val-idx', data[3], '--model', 'cifar_aff_resnet20_b1', '--classes', '10',
            '--input-size', '32', '--batch-size', '4', '--num-epochs', '1', '-j', '0',
            '--warmup-epochs', '0', '--logging-file', str(tmp_path / 'in.log'),
            '--save-dir', str(tmp_path / 'in')]
    assert train_imagenet.main(base) == 0
    mine = glob.glob(str(tmp_path / 'in' / 'imagenet-*-last.params'))[0]
    one_error_line(capsys, train_imagenet.main,
                   base + ['--num-epochs', '5', '--resume-epoch', '3', '--resume-params', mine],
                   '--resume-epoch 3 contradicts', 'pass 1')
    theirs = str(other / 'params' / 'cifar10-ASKCFuse-resnet-8-c-2-s-1-last.states')
    one_error_line(capsys, train_imagenet.main,
                   base + ['--resume-params', mine, '--resume-states', theirs],
                   'is not the states file')
    bare = str(tmp_path / 'bare.params')
    os.link(mine, bare)
    one_error_line(capsys, train_imagenet.main,
                   base + ['--resume-params', bare, '--resume-states', theirs],
                   theirs, "another model's")
    garbled = str(tmp_path / 'garbled.states')
    with open(garbled, 'wb') as f:
        f.write(b'\x80\x04garbage')
    one_error_line(capsys, train_imagenet.main,
                   base + ['--resume-params', bare, '--resume-states', garbled],
                   garbled, 'not an optimizer-states file')


def test_a_torn_or_garbled_set_is_named_or_falls_back_to_a_complete_one(cifar, tmp_path, capsys):
    assert train_cifar.main(argv(cifar, tmp_path, '--num-epochs', '3', '--save-period', '1')) == 0
    with open(last(tmp_path, 'states'), 'r+b') as f:   # truncate one part
        f.truncate(100)
    assert train_cifar.main(argv(cifar, tmp_path, '--num-epochs', '4', '--save-period', '1',
                                 '--resume-from', last(tmp_path))) == 0
    text = log_text(tmp_path)
    assert 'resuming from' in text and '-0002 (epoch 2) instead' in text and 'torn' in text
    alone = tmp_path / 'alone'
    assert train_cifar.main(argv(cifar, alone, '--num-epochs', '1')) == 0
    with open(last(alone, 'params'), 'ab') as f:
        f.write(b'x')
    one_error_line(capsys, train_cifar.main, argv(cifar, alone, '--resume-from', last(alone)),
                   'does not match its commit record', 'no other complete checkpoint set')
    with open(last(alone, 'json'), 'w') as f:
        f.write('{"epoch": 0, "par')
    one_error_line(capsys, train_cifar.main, argv(cifar, alone, '--resume-from', last(alone)),
                   last(alone, 'json'), 'unreadable JSON')
    one_error_line(capsys, train_cifar.main,
                   argv(cifar, alone, '--resume-from', str(alone / 'params')), 'is a folder')


def test_a_checkpoint_of_an_earlier_run_needs_more_epochs(cifar, tmp_path, capsys):
    assert train_cifar.main(argv(cifar, tmp_path)) == 0
    one_error_line(capsys, train_cifar.main,
                   argv(cifar, tmp_path, '--num-epochs', '1', '--resume-from', last(tmp_path)),
                   'ends at epoch 1', 'only 1 epochs')
    # the same number of epochs: a finished run, said (not silently "resumed")
    assert train_cifar.main(argv(cifar, tmp_path, '--resume-from', last(tmp_path))) == 0
    assert 'nothing left to train: ' in log_text(tmp_path) and '(1 of 2)' in log_text(tmp_path)


# ----------------------------------------------------------------------------- outputs
def test_unwritable_output_folders_fail_before_training(cifar, tmp_path, capsys):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    args = argv(cifar, tmp_path, '--num-epochs', '1')
    args[args.index('--save-dir') + 1] = str(blocker / 'params')
    one_error_line(capsys, train_cifar.main, args, '--save-dir', 'not a writable folder')
    assert not (tmp_path / 'logs').exists()   # nothing trained, nothing logged
    one_error_line(capsys, train_seg.main,
                   ['--dataset', 'synthetic-stopsign', '--logging-dir', str(blocker)],
                   '--logging-dir')


def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_previous_set(cifar, tmp_path,
                                                                          monkeypatch, capsys):
    arm_full_disk(monkeypatch, tmp_path, train_cifar.main, argv(cifar, tmp_path / 'a'),
                  'written %s-last.json' % NAME)                          # epoch 1's commit
    out = tmp_path / 'b'
    one_error_line(capsys, train_cifar.main, argv(cifar, out), 'epoch 1', 'No space left',
                   'intact')
    assert C.read_set(last(out)[:-7]).epoch == 0
    assert not glob.glob(str(out / 'params' / '.*.tmp'))


@pytest.mark.parametrize('where,outcome', [('appended train_%s.csv' % NAME, 'error'),
                                           ('written %s_history.png' % NAME, 'warning')])
def test_a_full_disk_while_logging_is_one_line_or_a_warning(cifar, tmp_path, monkeypatch, capsys,
                                                            where, outcome):
    arm_full_disk(monkeypatch, tmp_path, train_cifar.main, argv(cifar, tmp_path / 'a'), where)
    out = tmp_path / 'b'
    if outcome == 'error':
        one_error_line(capsys, train_cifar.main, argv(cifar, out), 'writing the log of epoch 1',
                       'No space left')
        assert C.read_set(last(out)[:-7]).epoch == 0
    else:   # the plot comes after the commit: the run goes on and says so
        assert train_cifar.main(argv(cifar, out)) == 0
        assert 'WARNING: the history plot' in log_text(out) and 'No space left' in log_text(out)
        assert C.read_set(last(out)[:-7]).epoch == 1


def test_leftovers_of_an_interrupted_save_are_removed_and_said(cifar, tmp_path):
    assert train_cifar.main(argv(cifar, tmp_path, '--num-epochs', '1')) == 0
    for junk in ('.%s-last.params.123.abcd.tmp' % NAME, '%s-last.states.pending' % NAME):
        (tmp_path / 'params' / junk).write_bytes(b'partial')
    assert train_cifar.main(argv(cifar, tmp_path, '--resume-from', last(tmp_path))) == 0
    assert 'removed 2 file(s) an interrupted save left' in log_text(tmp_path)
    assert not glob.glob(str(tmp_path / 'params' / '*.pending'))


def test_check_states_names_a_file_of_another_network(tmp_path):
    small, big = mx.gluon.nn.Dense(2, in_units=3), mx.gluon.nn.Dense(4, in_units=3)
    for n in (small, big):
        n.initialize()
    trainer = T.make_trainer(big, None, 0.1, 0, 0.9)
    with mx.autograd.record():
        loss = big(mx.nd.ones((1, 3))).sum()
    loss.backward()
    trainer.step(1)
    trainer.save_states(str(tmp_path / 'big.states'))
    # a Trainer orders its parameters by name: check_states takes them in the trainer's order
    small_trainer = T.make_trainer(small, None, 0.1, 0, 0.9)
    with pytest.raises(CheckpointError, match="another model's"):
        C.check_states(str(tmp_path / 'big.states'), small_trainer._params)
    C.check_states(str(tmp_path / 'big.states'), trainer._params)
    with pytest.raises(CheckpointError, match='does not exist'):
        C.check_states(str(tmp_path / 'missing.states'), trainer._params)


def test_imagenet_eval_needs_only_the_validation_data(tmp_path, capsys):
    rng = np.random.RandomState(0)
    rv, rvi = I.write_tiny_rec(str(tmp_path / 'val'), [rng.randint(0, 256, (36, 36, 3), np.uint8)
                                                       for _ in range(6)], np.zeros(6))
    model = mx.gluon.nn.HybridSequential()
    import net
    m = net.get_model('cifar_aff_resnet20_b1', classes=4)
    m.initialize()
    m(mx.nd.zeros((1, 3, 32, 32)))
    m.save_parameters(str(tmp_path / 'w.params'))
    del model
    assert train_imagenet.main(['--eval', '--use-rec', '--rec-val', rv, '--rec-val-idx', rvi,
                                '--rec-train', str(tmp_path / 'missing.rec'),
                                '--model', 'cifar_aff_resnet20_b1', '--classes', '4',
                                '--input-size', '32', '--batch-size', '2', '-j', '0',
                                '--resume-params', str(tmp_path / 'w.params')]) == 0
    assert '6 validation images' in capsys.readouterr().out


def test_run_main_maps_a_diverged_run_to_its_exit_status(capsys):
    def boom():
        raise Diverged('the loss is nan')
    with pytest.raises(SystemExit) as e:
        run_main(boom)
    assert e.value.code == EXIT_DIVERGED != 2
    assert isinstance(Diverged('x'), AFFError)


@pytest.mark.parametrize('mode', [(), ('--cosine',)])
def test_a_training_set_smaller_than_one_batch_is_one_line(cifar, tmp_path, capsys, mode):
    one_error_line(capsys, train_cifar.main, argv(cifar, tmp_path, '--batch-size', '128', *mode),
                   'an epoch has no iteration', '--batch-size')


def test_library_warnings_reach_the_runs_log(cifar, tmp_path, monkeypatch):
    import warnings
    real = T.train_step

    def warn_once(*args):
        warnings.warn('a library warning for the log', UserWarning)
        return real(*args)
    monkeypatch.setattr(T, 'train_step', warn_once)
    with warnings.catch_warnings():
        warnings.simplefilter('always')
        assert train_cifar.main(argv(cifar, tmp_path, '--num-epochs', '1')) == 0
    assert 'WARNING (py.warnings):' in log_text(tmp_path)
    assert 'a library warning for the log' in log_text(tmp_path)
