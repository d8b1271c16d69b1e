"""utils.launch: a real 2-worker dist_sync run equals a single-process run, and the launcher
stops every process it started (failing worker, timeout, signals, start failure).

Everything runs on 127.0.0.1 and every process is time-bounded: the launcher gets --timeout,
each subprocess a timeout, and every pid the launcher reports is checked to be gone.
"""
import os
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT
from launched import assert_all_gone, kill_leftovers, read_pids
from net.errors import AFFError
from utils import launch
from utils.cli import run_main

LAUNCH = [sys.executable, '-m', 'utils.launch']
STEPS, BATCH = 5, 8


# ----------------------------------------------------------------------------- helpers
def _launch(args, timeout, **kw):
    return subprocess.run(LAUNCH + args, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, **kw)


# ------------------------------------------------------------------------ dist_sync = one process
def _load(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.mark.slow
def test_dist_sync_two_workers_match_single_process(tmp_path):
    """2 workers + 1 server + scheduler (kvstore dist_sync, SGD) end with identical parameters,
    equal to one process training the same global batches on two CPU contexts (one half batch
    each, so BatchNorm sees the same halves); the BatchNorm moving statistics of worker r are
    those of context r."""
    worker = os.path.join('tests', 'dist_worker.py')
    common = ['--steps', str(STEPS), '--batch-size', str(BATCH), '--seed', '3']
    pid_file = str(tmp_path / 'pids')
    refs = {
        # the exact equivalent: one context per worker
        'ref2': [sys.executable, worker, '--reference', '--contexts', '2'],
        # a negative control: BatchNorm over the whole global batch gives other numbers
        'ref1': [sys.executable, worker, '--reference', '--contexts', '1'],
    }
    procs = {name: subprocess.Popen(argv + common + ['--out', str(tmp_path / (name + '.npz'))],
                                    cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
             for name, argv in refs.items()}
    try:
        run = _launch(['-n', '2', '-s', '1', '--timeout', '60', '--pid-file', pid_file, '--',
                       sys.executable, worker, '--out', str(tmp_path / 'w{rank}.npz')] + common,
                      timeout=90)
        outs = {name: p.communicate(timeout=60)[0] for name, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.communicate()
        kill_leftovers(pid_file)
    assert run.returncode == 0, run.stdout + run.stderr
    for name, p in procs.items():
        assert p.returncode == 0, outs[name]
    assert_all_gone(pid_file, ['scheduler', 'server', 'worker', 'worker'])
    # every line of every process is forwarded with its prefix
    assert '[worker 0] rank ' in run.stdout and '[worker 1] rank ' in run.stdout, run.stdout
    assert '[launch] started scheduler: pid' in run.stderr
    assert '[launch] all 2 worker(s) succeeded' in run.stderr

    w = [_load(tmp_path / ('w%d.npz' % r)) for r in range(2)]
    ref, ref1 = _load(tmp_path / 'ref2.npz'), _load(tmp_path / 'ref1.npz')
    names = [k[len('param/'):] for k in ref if k.startswith('param/')]
    aux = [k[len('aux0/'):] for k in ref if k.startswith('aux0/')]
    assert len(names) > 50 and len(aux) > 20  # the whole AFF network, BatchNorm included
    for r in range(2):
        assert sorted(w[r]) == sorted(['init/' + n for n in names] + ['param/' + n for n in names]
                                      + ['aux%d/%s' % (r, a) for a in aux] + ['loss%d' % r])
    # same start everywhere, and the training moved it
    for n in names:
        np.testing.assert_array_equal(w[0]['init/' + n], ref['init/' + n])
        np.testing.assert_array_equal(w[1]['init/' + n], ref['init/' + n])
    moved = max(float(np.abs(ref['param/' + n] - ref['init/' + n]).max()) for n in names)
    assert moved > 1e-2
    # (a) the workers agree: both pulled the same weights from the server
    for n in names:
        np.testing.assert_array_equal(w[0]['param/' + n], w[1]['param/' + n], err_msg=n)
    # (b) ... and equal the single-process run (measured: bit-identical)
    worst = max(_rel(w[0]['param/' + n], ref['param/' + n]) for n in names)
    assert worst <= 1e-5, 'max relative parameter difference %.3g' % worst
    for r in range(2):
        np.testing.assert_allclose(w[r]['loss%d' % r], ref['loss%d' % r], rtol=1e-5)
        worst_aux = max(_rel(w[r]['aux%d/%s' % (r, a)], ref['aux%d/%s' % (r, a)]) for a in aux)
        assert worst_aux <= 1e-5, 'worker %d BatchNorm statistics differ by %.3g' % (r, worst_aux)
    # the halves do differ (the per-half statistics are not a tautology), and so does a run
    # whose BatchNorm sees the whole global batch: the comparison above can fail
    assert max(_rel(ref['aux0/' + a], ref['aux1/' + a]) for a in aux) > 1e-3
    assert max(_rel(ref1['param/' + n], ref['param/' + n]) for n in names) > 1e-4


# ----------------------------------------------------------------------------- stopping everything
def test_failing_worker_status_and_nothing_left(tmp_path):
    """Worker 0 exits 3 while worker 1 (and its own child) and the real MXNet scheduler and
    server still run: the launcher exits 3 and every process is gone."""
    pid_file = str(tmp_path / 'pids')
    script = ('if [ "$AFF_LAUNCH_INDEX" = 0 ]; then sleep 1; exit 3; fi; '
              'sleep 1000 & sleep 1000')
    try:
        run = _launch(['-n', '2', '-s', '1', '--timeout', '30', '--grace', '3',
                       '--pid-file', pid_file, '--', 'sh', '-c', script], timeout=60)
    finally:
        kill_leftovers(pid_file)
    assert run.returncode == 3, run.stderr
    assert 'worker 0 (pid' in run.stderr and 'exited with status 3' in run.stderr
    assert_all_gone(pid_file, ['scheduler', 'server', 'worker', 'worker'])


@pytest.mark.slow
def test_timeout_stops_even_processes_ignoring_sigterm(tmp_path):
    """A hanging job (worker 0: sleep 1000; worker 1 also ignores SIGTERM) with --timeout 5:
    exit 124 soon after the timeout, SIGKILL after --grace for the stubborn one, nothing left."""
    pid_file = str(tmp_path / 'pids')
    script = 'if [ "$AFF_LAUNCH_INDEX" = 1 ]; then trap "" TERM; fi; exec sleep 1000'
    t0 = time.monotonic()
    try:
        run = _launch(['-n', '2', '-s', '1', '--timeout', '5', '--grace', '1',
                       '--pid-file', pid_file, '--', 'sh', '-c', script], timeout=60)
    finally:
        kill_leftovers(pid_file)
    elapsed = time.monotonic() - t0
    assert run.returncode == launch.EXIT_TIMEOUT, run.stderr
    assert 'timeout' in run.stderr and 'SIGKILL to worker 1' in run.stderr, run.stderr
    assert elapsed < 5 + 1 + 15, elapsed  # timeout + grace + interpreter start-up, not 1000 s
    assert_all_gone(pid_file, ['scheduler', 'server', 'worker', 'worker'])


@pytest.mark.parametrize('signum, status', [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=['SIGINT', 'SIGTERM'])
def test_signal_stops_everything(tmp_path, signum, status):
    """Ctrl-C (SIGINT to the launcher's process group, as a terminal sends it) or SIGTERM: the
    children live in their own sessions, so only the launcher receives it and stops them."""
    pid_file = str(tmp_path / 'pids')
    proc = subprocess.Popen(LAUNCH + ['-n', '2', '-s', '1', '--timeout', '60', '--grace', '2',
                                      '--pid-file', pid_file, '--', 'sleep', '1000'],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and proc.poll() is None:
            if os.path.exists(pid_file) and len(read_pids(pid_file)) == 4:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signum)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        kill_leftovers(pid_file)
    assert proc.returncode == status, err
    assert 'received %s' % signal.Signals(signum).name in err
    assert_all_gone(pid_file, ['scheduler', 'server', 'worker', 'worker'])


def test_start_failure_stops_what_was_started(tmp_path):
    """A worker command that cannot start: one `error:` line, exit 2, the scheduler and server
    already started are stopped."""
    pid_file = str(tmp_path / 'pids')
    try:
        run = _launch(['-n', '1', '--timeout', '30', '--grace', '2', '--pid-file', pid_file, '--',
                       str(tmp_path / 'no-such-program')], timeout=60)
    finally:
        kill_leftovers(pid_file)
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and 'cannot start the worker 0' in errors[0], run.stderr
    assert_all_gone(pid_file, ['scheduler', 'server'])


# ----------------------------------------------------------------------------- plan
def test_plan_local():
    entries = launch.plan(['-n', '2', '--env', 'FOO=1', '--', 'python', 'train.py'])
    assert [e[0] for e in entries] == ['scheduler', 'server', 'server', 'worker', 'worker']
    port = entries[0][2]['DMLC_PS_ROOT_PORT']
    assert 0 < int(port) < 65536
    for role, host, env, argv in entries:
        assert host == '127.0.0.1'
        assert env['DMLC_ROLE'] == role and env['DMLC_NODE_HOST'] == '127.0.0.1'
        assert env['DMLC_PS_ROOT_URI'] == '127.0.0.1' and env['DMLC_PS_ROOT_PORT'] == port
        assert (env['DMLC_NUM_SERVER'], env['DMLC_NUM_WORKER']) == ('2', '2')
        assert env['FOO'] == '1'
        if role == 'worker':
            assert argv == ['python', 'train.py']
        else:
            assert argv[:2] == [sys.executable, '-c'] and 'import mxnet' in argv[2]
    assert [e[2].get('AFF_LAUNCH_INDEX') for e in entries] == [None, '0', '1', '0', '1']


def test_plan_hostfile(tmp_path):
    """Slots are filled in order (wrapping around), servers go round robin, the scheduler runs on
    the first host; everything is started through ssh (never run here)."""
    hostfile = tmp_path / 'hosts'
    hostfile.write_text('# cluster\nnode-a:2\n\nnode-b   # one slot\n192.0.2.7:1\n')
    entries = launch.plan(['-n', '5', '-s', '2', '-H', str(hostfile), '--port', '9300',
                           '--env', 'NCCL_X=y', '--', 'python', 'train.py', '--tag', 'a b'])
    assert [(e[0], e[1]) for e in entries] == [
        ('scheduler', 'node-a'), ('server', 'node-a'), ('server', 'node-b'),
        ('worker', 'node-a'), ('worker', 'node-a'), ('worker', 'node-b'),
        ('worker', '192.0.2.7'), ('worker', 'node-a')]
    for role, host, env, argv in entries:
        assert env['DMLC_ROLE'] == role and env['DMLC_NODE_HOST'] == host
        assert env['DMLC_PS_ROOT_URI'] == 'node-a' and env['DMLC_PS_ROOT_PORT'] == '9300'
        assert (env['DMLC_NUM_SERVER'], env['DMLC_NUM_WORKER']) == ('2', '5')
        assert env['NCCL_X'] == 'y'
        assert argv[:5] == ['ssh', '-o', 'BatchMode=yes', '-tt', host] and len(argv) == 6
        remote = argv[5]
        assert remote.startswith('cd %s && exec env ' % shlex.quote(os.getcwd()))
        assert 'DMLC_ROLE=%s' % role in remote and 'DMLC_NODE_HOST=%s' % host in remote
        if role == 'worker':
            assert remote.endswith(" python train.py --tag 'a b'")
        else:
            assert sys.executable in remote and 'import mxnet' in remote
    # without --port the scheduler listens on the documented default
    assert launch.plan(['-n', '1', '-H', str(hostfile), '--', 'x'])[0][2][
        'DMLC_PS_ROOT_PORT'] == str(launch.DEFAULT_REMOTE_PORT)


# ----------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize('argv, words', [
    ([], 'num-workers'),
    (['-n', '2'], 'no command'),
    (['-n', '2', '--'], 'no command'),
    (['-n', '0', '--', 'x'], 'positive integer'),
    (['-n', 'two', '--', 'x'], 'positive integer'),
    (['-n', '2', '-s', '0', '--', 'x'], 'positive integer'),
    (['-n', '2', '--port', '70000', '--', 'x'], 'port'),
    (['-n', '2', '--timeout', '-1', '--', 'x'], 'seconds'),
    (['-n', '2', '--env', 'NOVALUE', '--', 'x'], 'NAME=VALUE'),
    (['-n', '2', '-H', '/nonexistent/hosts', '--', 'x'], 'cannot read host file'),
    (['-n', '2', '--bogus', '--', 'x'], 'unrecognized'),
])
def test_bad_arguments_one_error_line(argv, words, capsys):
    with pytest.raises(SystemExit) as exc:
        run_main(launch.main, argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and words in err[0], err


@pytest.mark.parametrize('content, words', [
    ('', 'lists no host'), ('# only a comment\n', 'lists no host'),
    ('node-a:0\n', 'line 1'), ('node-a\nnode-b:x\n', 'line 2'), ('a b\n', 'line 1')])
def test_bad_hostfile(tmp_path, content, words):
    path = tmp_path / 'hosts'
    path.write_text(content)
    with pytest.raises(AFFError, match=words):
        launch.plan(['-n', '2', '-H', str(path), '--', 'x'])


def test_cli_usage_error_is_one_line():
    run = _launch(['-n', '2'], timeout=60)
    assert run.returncode == 2 and run.stdout == ''
    assert run.stderr.strip().splitlines() == [
        'error: no command: put the worker command after --, e.g. '
        'python -m utils.launch -n 2 -- python train.py']


# ----------------------------------------------------------------------------- helpers for scripts
@pytest.mark.parametrize('n', [0, 1, 7, 8, 100])
@pytest.mark.parametrize('workers', [1, 2, 3, 8])
def test_shard_partitions(n, workers):
    parts = [launch.shard(n, r, workers) for r in range(workers)]
    covered = [i for p in parts for i in range(n)[p]]
    assert covered == list(range(n))  # disjoint, in order, complete
    sizes = [len(range(n)[p]) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_shard_and_distributed_info_errors():
    with pytest.raises(AFFError):
        launch.shard(10, 2, 2)
    with pytest.raises(AFFError):
        launch.shard(10, -1, 2)
    with pytest.raises(AFFError):
        launch.shard(-1, 0, 1)
    assert launch.distributed_info(None) == (0, 1)
    assert launch.distributed_info('device') == (0, 1)

    class KV:
        rank, num_workers = 3, 4
    assert launch.distributed_info(KV()) == (3, 4)
    import mxnet as mx
    assert launch.distributed_info(mx.kv.create('local')) == (0, 1)
    with pytest.raises(AFFError, match='mx.kv.create'):
        launch.distributed_info('dist_sync')
    with pytest.raises(AFFError):
        launch.distributed_info(42)


WORKER_WITH_GLUONCV_SCHEDULE = '''
import sys
sys.path.insert(0, %r)
import net
import mxnet as mx
from gluoncv.utils import LRScheduler
kv = mx.kv.create('dist_sync')
dense = mx.gluon.nn.Dense(1, in_units=2, use_bias=False)
dense.initialize(mx.init.One())
sched = LRScheduler('step', base_lr=1.0, nepochs=10, iters_per_epoch=1, step_epoch=[100])
trainer = mx.gluon.Trainer(dense.collect_params(), 'sgd', {'momentum': 0.0, 'lr_scheduler': sched},
                           kvstore=kv, update_on_kvstore=True)
for step in range(2):
    with mx.autograd.record():
        loss = dense(mx.nd.array([[1.0, 2.0]])).sum()
    loss.backward()
    trainer.step(1)
    print('weights', step, dense.weight.data().asnumpy().ravel().tolist(), flush=True)
'''


def test_servers_run_an_optimizer_with_a_gluoncv_schedule(tmp_path):
    """Our servers import GluonCV before serving, so the pickled optimizer (carrying a GluonCV
    LRScheduler) unpickles: two workers' gradients (1, 2) each give SGD steps of lr 1 on the
    summed gradient (2, 4): 1 -> -1 -> -3 and 1 -> -3 -> -7.  (A plain ``import mxnet`` server
    fails to unpickle it and stores the summed gradients, (2, 4), as the weights.)"""
    script = tmp_path / 'w.py'
    script.write_text(WORKER_WITH_GLUONCV_SCHEDULE % ROOT)
    pid_file = str(tmp_path / 'pids')
    try:
        run = _launch(['-n', '2', '-s', '1', '--timeout', '60', '--pid-file', pid_file, '--',
                       sys.executable, str(script)], timeout=90)
    finally:
        kill_leftovers(pid_file)
    assert run.returncode == 0, run.stderr[-3000:]
    for w in (0, 1):
        assert '[worker %d] weights 0 [-1.0, -3.0]' % w in run.stdout, run.stdout
        assert '[worker %d] weights 1 [-3.0, -7.0]' % w in run.stdout, run.stdout
    assert 'Exception ignored' not in run.stderr
    assert_all_gone(pid_file, ['scheduler', 'server', 'worker', 'worker'])
