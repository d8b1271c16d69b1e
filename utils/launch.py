"""Launch MXNet parameter-server training (kvstore ``dist_sync`` / ``dist_async``).

    python -m utils.launch -n WORKERS [-s SERVERS] [-H HOSTFILE] [--port P] [--timeout SECONDS]
                           [--grace SECONDS] [--env K=V ...] [--pid-file PATH] -- COMMAND ...

starts one scheduler, ``-s`` servers (default: as many as workers) and ``-n`` workers running
COMMAND, each with the ``DMLC_*`` variables ps-lite reads (``DMLC_ROLE``, ``DMLC_PS_ROOT_URI``,
``DMLC_PS_ROOT_PORT``, ``DMLC_NUM_SERVER``, ``DMLC_NUM_WORKER`` and ``DMLC_NODE_HOST``, without
which ps-lite advertises the first non-loopback interface).  Servers and workers also get
``AFF_LAUNCH_INDEX`` (their launch order; a worker's training rank is ``kvstore.rank``, which
the scheduler assigns, see :func:`distributed_info`).

* Without a host file everything runs on 127.0.0.1 (a free port is picked unless ``--port``).
* The scheduler and the servers are small Python processes (:data:`SERVER_CODE`) that import
  MXNet and GluonCV with ``DMLC_ROLE`` hidden and then start MXNet's kvstore server.  (A server
  started the usual way -- ``import mxnet`` with ``DMLC_ROLE=server`` -- serves from inside its own
  import, cannot unpickle an optimizer carrying a GluonCV LR scheduler, ignores that error and
  then stores the summed gradients as the weights: measured with MXNet 1.9.1.)
* Output: every line of every process is forwarded with a prefix -- ``[worker 0] ...``,
  ``[server 0] ...``, ``[scheduler] ...`` (stdout to stdout, stderr to stderr); the launcher's
  own lines start with ``[launch]`` and name every pid it starts (``--pid-file`` also writes
  ``role index pid host`` lines).
* Exit status: the first non-zero worker status (a worker killed by signal N counts as
  128+N), 0 when every worker succeeded; a scheduler/server that fails while workers run
  stops everything (its status, or 1); ``--timeout`` expiring gives 124; SIGTERM/SIGHUP give
  128+signal and Ctrl-C 130.  In every case every process started is stopped: each runs in
  its own process group (session), which gets SIGTERM, then SIGKILL after ``--grace``
  seconds.  When the workers succeed, the scheduler and servers get ``--grace`` seconds to
  exit on their own first.  (Only a SIGKILL of the launcher itself can orphan its children;
  they are then the process groups whose ids it printed.)

Host file (``-H``): one host per line, ``host`` or ``host:slots`` (``#`` starts a comment; use
IPv4 addresses or names that resolve to the address the hosts reach each other on).  The
scheduler runs on the first host (``DMLC_PS_ROOT_URI`` = that host, port ``--port``, default
9091); workers fill the slots in order (wrapping around when there are more workers than
slots) and servers go one per host, round robin.  Each process is started as
``ssh -o BatchMode=yes -tt HOST 'cd CWD && exec env DMLC_...=... COMMAND'``: passwordless ssh,
the same directory and the same Python path on every host are assumed, and only the
``DMLC_*``/``--env`` variables travel (``-tt`` makes the remote process receive SIGHUP when the
launcher stops its ssh).  :func:`plan` returns these command lines without running anything.

For training scripts: :func:`distributed_info` (rank and number of workers of a kvstore) and
:func:`shard` (the slice of ``n_items`` a worker reads).  Workers must start from the same weights
(same seed) and must not run a forward pass outside ``autograd.record()`` before the first
``trainer.step``: with oneDNN, that reorders convolution weights and MXNet 1.9.1 then loses the
initial kvstore push of some of them (the server dies with "init K first"; tests/dist_worker.py).
"""
import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

from net.errors import AFFError
from utils.cli import positive_int, run_main

__all__ = ['plan', 'run', 'main', 'distributed_info', 'shard', 'read_hostfile']

LOOPBACK = '127.0.0.1'
DEFAULT_REMOTE_PORT = 9091
EXIT_TIMEOUT = 124
# The scheduler and the servers: import MXNet (and GluonCV) with DMLC_ROLE hidden, then serve.
# With DMLC_ROLE set, `import mxnet` itself would start serving half-way through its own import,
# where nothing that imports mxnet works -- e.g. unpickling a GluonCV LR scheduler, so a server
# silently runs without the workers' optimizer (and stores the summed gradients as weights).
# Reaching the last statement means the role was not taken (say so instead of exiting 0).
SERVER_CODE = (
    'import os\n'
    'role = os.environ.pop("DMLC_ROLE")\n'
    'import mxnet\n'
    'try:\n'
    '    import gluoncv  # noqa: F401  (what the pickled optimizers may refer to)\n'
    'except ImportError:\n'
    '    pass\n'
    'os.environ["DMLC_ROLE"] = role\n'
    'from mxnet.kvstore.kvstore_server import _init_kvstore_server_module\n'
    '_init_kvstore_server_module()\n'
    'raise SystemExit("DMLC_ROLE=%s did not start a kvstore scheduler/server" % role)\n')
POLL = 0.05


# ----------------------------------------------------------------------------- helpers for training
def distributed_info(kvstore):
    """``(rank, num_workers)`` of a kvstore: a ``mx.kv.KVStore`` (or anything with ``rank`` and
    ``num_workers``), a non-distributed kvstore name (``'device'``, ``'local'``...) or ``None``
    (both ``(0, 1)``).

    A ``'dist_*'`` name is refused: a gluon ``Trainer`` creates its kvstore lazily (at the first
    step), too late to choose a data shard -- create it first and hand it to the trainer::

        kv = mx.kv.create('dist_sync')
        rank, num_workers = distributed_info(kv)
        trainer = gluon.Trainer(params, 'sgd', opts, kvstore=kv)
    """
    if kvstore is None:
        return 0, 1
    if isinstance(kvstore, str):
        if 'dist' in kvstore:
            raise AFFError("kvstore %r: create it first (kv = mx.kv.create(%r)) and pass the "
                           "KVStore object, whose rank is known only once it exists"
                           % (kvstore, kvstore))
        return 0, 1
    try:
        rank, num_workers = int(kvstore.rank), int(kvstore.num_workers)
    except AttributeError:
        raise AFFError('distributed_info() needs a KVStore, a kvstore name or None, not %s'
                       % type(kvstore).__name__) from None
    return rank, num_workers


def shard(n_items, rank, num_workers):
    """The contiguous ``slice`` of ``range(n_items)`` worker ``rank`` of ``num_workers`` reads:
    shards are disjoint, cover everything and differ in size by at most one (the first
    ``n_items % num_workers`` shards hold one more item)."""
    if n_items < 0:
        raise AFFError('shard(): n_items must be >= 0, got %d' % n_items)
    if num_workers < 1 or not 0 <= rank < num_workers:
        raise AFFError('shard(): rank %d is not in [0, %d)' % (rank, num_workers))
    base, extra = divmod(n_items, num_workers)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


# ----------------------------------------------------------------------------- arguments and plan
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one `error: ...` line through run_main, not usage + message
        raise AFFError(message)


def _parser():
    p = _Parser(prog='python -m utils.launch',
                description='Start an MXNet parameter-server job (scheduler, servers, workers).',
                epilog='Everything after -- is the worker command.')
    p.add_argument('-n', '--num-workers', type=positive_int, required=True, help='workers')
    p.add_argument('-s', '--num-servers', type=positive_int, default=None,
                   help='servers (default: as many as workers)')
    p.add_argument('-H', '--hostfile', default=None,
                   help='host file (host or host:slots per line): start through ssh')
    p.add_argument('--port', type=_port, default=None,
                   help='scheduler port (default: a free one locally, %d with -H)'
                   % DEFAULT_REMOTE_PORT)
    p.add_argument('--timeout', type=_positive_float, default=None,
                   help='stop everything after this many seconds (exit 124)')
    p.add_argument('--grace', type=_positive_float, default=5.0,
                   help='seconds between SIGTERM and SIGKILL, and for servers to exit '
                   'after the workers (default 5)')
    p.add_argument('--env', action='extend', nargs='+', default=[], metavar='K=V',
                   help='extra environment variables of every process')
    p.add_argument('--pid-file', default=None, help='write "role index pid host" lines here')
    return p


def _port(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError('expected a port in 1..65535, got %r' % text)
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError('expected a positive number of seconds, got %r' % text)
    return value


def parse_args(argv):
    """Launcher options before ``--``, the command after it."""
    argv = list(argv)
    if '--' in argv:
        cut = argv.index('--')
        own, command = argv[:cut], argv[cut + 1:]
    else:
        own, command = argv, []
    args = _parser().parse_args(own)
    if not command:
        raise AFFError('no command: put the worker command after --, e.g. '
                       'python -m utils.launch -n 2 -- python train.py')
    args.command = command
    if args.num_servers is None:
        args.num_servers = args.num_workers
    extra = {}
    for item in args.env:
        key, sep, value = item.partition('=')
        if not sep or not key or not key.replace('_', 'a').isalnum() or key[0].isdigit():
            raise AFFError('--env %r is not NAME=VALUE' % item)
        extra[key] = value
    args.extra_env = extra
    return args


def read_hostfile(path):
    """``[(host, slots), ...]`` from a host file (``host`` or ``host:slots`` per line)."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise AFFError('cannot read host file %s: %s' % (path, getattr(e, 'strerror', None) or e))
    hosts = []
    for number, line in enumerate(lines, 1):
        line = line.split('#', 1)[0].strip()
        if not line:
            continue
        host, sep, slots = line.partition(':')
        host = host.strip()
        try:
            slots = int(slots) if sep else 1
        except ValueError:
            slots = 0
        if not host or slots < 1 or any(c.isspace() for c in host):
            raise AFFError('host file %s, line %d: expected host or host:slots (slots >= 1), '
                           'got %r' % (path, number, line))
        hosts.append((host, slots))
    if not hosts:
        raise AFFError('host file %s lists no host' % path)
    return hosts


def free_port(host=LOOPBACK):
    """A TCP port nobody listens on right now (bound and released by the kernel)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _ssh_argv(host, env, argv):
    exports = ' '.join(shlex.quote('%s=%s' % kv) for kv in env.items())
    remote = 'cd %s && exec env %s %s' % (shlex.quote(os.getcwd()), exports, shlex.join(argv))
    return ['ssh', '-o', 'BatchMode=yes', '-tt', host, remote]


def plan(args):
    """What :func:`run` starts: ``[(role, host, env, argv), ...]`` -- the scheduler, the
    servers, then the workers.  ``args`` is the launcher's argument list (or its parsed
    namespace); ``env`` holds only the variables the launcher sets (the local processes also
    inherit the launcher's environment), ``argv`` is the command line (``ssh ...`` with -H)."""
    if not isinstance(args, argparse.Namespace):
        args = parse_args(args)
    server_argv = [sys.executable, '-c', SERVER_CODE]
    if args.hostfile:
        hosts = read_hostfile(args.hostfile)
        root, port = hosts[0][0], args.port or DEFAULT_REMOTE_PORT
        slots = [h for h, n in hosts for _ in range(n)]
        worker_hosts = [slots[i % len(slots)] for i in range(args.num_workers)]
        server_hosts = [hosts[i % len(hosts)][0] for i in range(args.num_servers)]
    else:
        root, port = LOOPBACK, args.port or free_port()
        worker_hosts = [LOOPBACK] * args.num_workers
        server_hosts = [LOOPBACK] * args.num_servers
    common = {'DMLC_PS_ROOT_URI': root, 'DMLC_PS_ROOT_PORT': str(port),
              'DMLC_NUM_SERVER': str(args.num_servers), 'DMLC_NUM_WORKER': str(args.num_workers)}

    def entry(role, host, argv, index=None):
        env = dict(args.extra_env)
        env.update(common, DMLC_ROLE=role, DMLC_NODE_HOST=host)
        if index is not None:
            env['AFF_LAUNCH_INDEX'] = str(index)
        if args.hostfile:
            argv = _ssh_argv(host, env, argv)
        return role, host, env, list(argv)

    out = [entry('scheduler', root, server_argv)]
    out += [entry('server', h, server_argv, i) for i, h in enumerate(server_hosts)]
    out += [entry('worker', h, args.command, i) for i, h in enumerate(worker_hosts)]
    return out


# ----------------------------------------------------------------------------- running
class _Signals:
    """SIGTERM, SIGHUP and SIGINT (Ctrl-C) only record themselves while the launcher runs: the
    spawn and supervision loops notice and stop everything (no exception in the middle of
    starting a process, which could leave it unrecorded)."""
    HANDLED = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)

    def __init__(self):
        self.received = None
        self.previous = {}

    def __enter__(self):
        for s in self.HANDLED:
            self.previous[s] = signal.signal(s, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.received is None:
            self.received = signum

    def __exit__(self, *exc):
        for s, h in self.previous.items():
            signal.signal(s, h)


class _Output:
    """Forwards the lines of every child with a prefix; one lock so lines never interleave."""

    def __init__(self):
        self.lock = threading.Lock()
        self.threads = []

    def forward(self, stream, sink, prefix):
        def pump():
            try:
                for line in iter(stream.readline, b''):
                    self.write(sink, prefix + line.rstrip(b'\r\n') + b'\n')
            except (OSError, ValueError):
                pass
            finally:
                stream.close()
        t = threading.Thread(target=pump, daemon=True)
        t.start()
        self.threads.append(t)

    def write(self, sink, data):
        with self.lock:
            try:
                sink.write(data)
                sink.flush()
            except (OSError, ValueError):
                pass  # a closed terminal/pipe must not stop the supervision

    def join(self, timeout):
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, end - time.monotonic()))


class _Child:
    def __init__(self, role, index, host, env, argv, output):
        self.role, self.index, self.host = role, index, host
        self.label = role if role == 'scheduler' else '%s %d' % (role, index)
        full = dict(os.environ)
        full.update(env)
        try:
            self.popen = subprocess.Popen(argv, env=full, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          start_new_session=True)
        except OSError as e:
            raise AFFError('cannot start the %s: %s: %s' % (self.label, argv[0], e.strerror))
        self.pid = self.popen.pid  # = its process group id (own session)
        self.status = None         # exit status once it exited (128+N when killed by signal N)
        prefix = ('[%s] ' % self.label).encode()
        output.forward(self.popen.stdout, sys.stdout.buffer, prefix)
        output.forward(self.popen.stderr, sys.stderr.buffer, prefix)

    def check(self):
        """Exit status if the process exited, else None -- without reaping it: the zombie keeps
        its pid, so its process group id cannot be reused before :meth:`reap`."""
        if self.status is None:
            try:
                info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                info = None
                if self.popen.returncode is not None:
                    self.status = _status(self.popen.returncode)
            if info is not None:
                if info.si_code == os.CLD_EXITED:
                    self.status = info.si_status
                else:
                    self.status = 128 + info.si_status
        return self.status

    def signal_group(self, signum):
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def reap(self):
        self.popen.wait()
        if self.status is None:
            self.status = _status(self.popen.returncode)


def _status(returncode):
    return 128 - returncode if returncode < 0 else returncode


def _say(output, text):
    output.write(sys.stderr.buffer, ('[launch] %s\n' % text).encode())


def _write_pids(path, children):
    try:
        with open(path, 'w') as f:
            for c in children:
                f.write('%s %s %d %s\n' % (c.role, '-' if c.role == 'scheduler' else c.index,
                                           c.pid, c.host))
    except OSError as e:
        raise AFFError('cannot write --pid-file %s: %s' % (path, e.strerror))


def _supervise(children, deadline, grace, output, signals):
    """Wait for the workers; the exit status of the job."""
    workers = [c for c in children if c.role == 'worker']
    others = [c for c in children if c.role != 'worker']
    while True:
        for c in workers:  # in launch order, so simultaneous failures report the lowest index
            if c.check() not in (None, 0):
                _say(output, '%s (pid %d) exited with status %d: stopping every process'
                     % (c.label, c.pid, c.status))
                return c.status
        for c in others:  # a dead scheduler/server leaves the workers waiting for ever
            if c.check() not in (None, 0):
                _say(output, '%s (pid %d) exited with status %d: stopping every process'
                     % (c.label, c.pid, c.status))
                return c.status
        if all(c.status == 0 for c in workers):
            break
        if signals.received is not None:
            return _interrupted(signals, output)
        if deadline is not None and time.monotonic() >= deadline:
            _say(output, 'timeout: the job is still running after --timeout: stopping every '
                 'process')
            return EXIT_TIMEOUT
        time.sleep(POLL)
    _say(output, 'all %d worker(s) succeeded' % len(workers))
    end = time.monotonic() + grace
    if deadline is not None:
        end = min(end, deadline)
    while any(c.check() is None for c in others) and time.monotonic() < end:
        time.sleep(POLL)
    left = [c.label for c in others if c.check() is None]
    if left:
        _say(output, '%s still running %.3g s after the workers: stopping'
             % (', '.join(left), grace))
    return 0


def _stop(children, grace, output):
    """SIGTERM every process group, SIGKILL after ``grace`` seconds, then reap."""
    running = [c for c in children if c.check() is None]
    for c in children:  # also groups whose leader exited: stragglers they left behind
        c.signal_group(signal.SIGTERM)
    end = time.monotonic() + grace
    while any(c.check() is None for c in running) and time.monotonic() < end:
        time.sleep(POLL)
    stubborn = [c.label for c in running if c.check() is None]
    if stubborn:
        _say(output, 'SIGKILL to %s (still running %.3g s after SIGTERM)'
             % (', '.join(stubborn), grace))
    for c in children:  # leaders are unreaped zombies at worst: their group ids are still ours
        c.signal_group(signal.SIGKILL)
    for c in children:
        c.reap()


def _interrupted(signals, output):
    _say(output, 'received %s: stopping every process' % signal.Signals(signals.received).name)
    return 128 + signals.received


def run(args):
    """Start the job described by ``args`` (a namespace from :func:`parse_args`), supervise it,
    stop everything; returns the exit status."""
    entries = plan(args)
    output = _Output()
    children = []
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    with _Signals() as signals:
        try:
            root = entries[0][2]
            _say(output, 'scheduler on %s:%s, %d server(s), %d worker(s): %s'
                 % (root['DMLC_PS_ROOT_URI'], root['DMLC_PS_ROOT_PORT'], args.num_servers,
                    args.num_workers, shlex.join(args.command)))
            counters = {}
            for role, host, env, argv in entries:
                if signals.received is not None:
                    return _interrupted(signals, output)
                index = counters[role] = counters.get(role, -1) + 1
                child = _Child(role, index, host, env, argv, output)
                children.append(child)
                _say(output, 'started %s: pid %d (process group %d) on %s'
                     % (child.label, child.pid, child.pid, host))
                if args.pid_file:
                    _write_pids(args.pid_file, children)
            return _supervise(children, deadline, args.grace, output, signals)
        finally:
            _stop(children, args.grace, output)
            output.join(2.0)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run(args)


if __name__ == '__main__':
    run_main(main)
