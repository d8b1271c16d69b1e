"""`pip install .` gives working tools (docs/install.md).

The slow tests build the package, offline, into a fresh venv that sees the running interpreter's packages
through a ``.pth`` file (``pip install --no-index --no-build-isolation --no-deps``), then run the installed
``aff-*`` commands from a folder outside the repository, with ``$HOME`` pointing at a temporary folder: the
paths the tools use must come from the installed package (utils.paths), never from the current directory
or the checkout.
"""
import importlib
import importlib.metadata
import importlib.util
import os
import shlex
import site
import subprocess
import sys
import sysconfig

import pytest

from conftest import ROOT, load_setup
from utils import console, paths

SCRIPTS = paths.SCRIPTS
TIMEOUT = 120


def project_files():
    """The files of the checkout as git would commit them (tracked, plus untracked ones git does not
    ignore), relative to ROOT with '/'; None when ROOT is not a git checkout."""
    try:
        res = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                             cwd=ROOT, capture_output=True, timeout=60)
    except OSError:
        return None
    if res.returncode:
        return None
    return sorted(f for f in res.stdout.decode().split('\0') if f and os.path.isfile(os.path.join(ROOT, f)))


def package_files(files):
    """Those of ``files`` under net/ and utils/: what the installed packages must hold."""
    return [f for f in files if f.split('/')[0] in ('net', 'utils')]


# --------------------------------------------------------------------------- fast
def test_package_data_is_every_file_under_the_packages_that_is_not_python():
    files = project_files()
    if files is None:
        pytest.skip('not a git checkout: the tracked files are the reference')
    data = load_setup().package_data()
    listed = {'%s/%s' % (pkg, f) for pkg, fs in data.items() for f in fs}
    wanted = {f for f in package_files(files) if not f.endswith('.py')}
    assert wanted - listed == set(), 'setup.py package_data misses tracked files'
    assert any(f.startswith('utils/official_logs/') for f in listed)


def test_every_command_runs_a_main():
    for command, (module, _) in console.TOOLS.items():
        assert command.startswith('aff-')
        assert callable(getattr(console, console.function_name(command)))
        assert callable(importlib.import_module(module).main), module
    assert {'aff-train-cifar', 'aff-train-imagenet', 'aff-train-seg', 'aff-reproduce', 'aff-compare',
            'aff-models'} <= set(console.TOOLS)


def test_a_missing_optional_package_names_its_extra():
    from net.errors import AFFError, import_extra
    assert import_extra('json', 'json', 'demo', 'x').dumps
    with pytest.raises(AFFError, match=r"the quick start needs no-such-dist, which is not installed: "
                       r"pip install 'openaff-gluon\[demo\]'"):
        import_extra('aff_no_such_module.sub', 'no-such-dist', 'demo', 'the quick start')


# --------------------------------------------------------------------------- the installed package
def visible_dirs():
    """The folders the running interpreter imports third-party packages from (its site-packages and
    any PYTHONPATH entry), without the standard library and without anything inside the checkout."""
    std = {os.path.abspath(sysconfig.get_paths()[k]) for k in ('stdlib', 'platstdlib')}
    std |= {os.path.join(d, 'lib-dynload') for d in std}
    out = []
    for p in list(site.getsitepackages()) + sys.path:
        p = os.path.abspath(p) if p else ''
        # the checkout's own folders, not a venv that lives inside it (make venv's .venv)
        inside = p == ROOT or (p.startswith(ROOT + os.sep) and 'site-packages' not in p.split(os.sep))
        if not p or not os.path.isdir(p) or p in out or p in std or inside:
            continue
        out.append(p)
    return out


def version(distribution):
    """The installed version of ``distribution``, or None.  (By metadata: importing, or even looking
    up, pip or setuptools makes setuptools replace distutils in this process, with a warning.)"""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def can_build_wheels():
    """setuptools >= 70.1 has bdist_wheel; older ones need the `wheel` package."""
    major, minor = (int(x) for x in (version('setuptools') or '0.0').split('.')[:2])
    return (major, minor) >= (70, 1) or version('wheel') is not None


class Installed:
    def __init__(self, venv, site_dir, home, work, env):
        self.venv, self.site, self.home, self.work, self.env = venv, site_dir, home, work, env

    def bin(self, name):
        return os.path.join(self.venv, 'bin', name)

    def run(self, argv, **kw):
        """Run argv in the work folder (outside the checkout); CompletedProcess with text output."""
        return subprocess.run(argv, cwd=self.work, env=self.env, capture_output=True, text=True,
                              timeout=TIMEOUT, stdin=subprocess.DEVNULL, **kw)


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    if importlib.util.find_spec('venv') is None or version('pip') is None:
        pytest.skip('the venv module or pip is not available to this interpreter')
    files = project_files()
    if files is None:
        pytest.skip('not a git checkout: the tracked files are what is built')
    if not can_build_wheels():
        pytest.fail('cannot build a wheel offline: setuptools %s has no bdist_wheel and the `wheel` '
                    'package is missing; `make venv` installs the pinned wheel (requirements.txt)'
                    % version('setuptools'))
    base = tmp_path_factory.mktemp('install')
    src, venv, home, work = (str(base / n) for n in ('src', 'venv', 'home', 'work'))
    for f in files:  # build from a copy: setuptools writes build/ and *.egg-info next to setup.py
        os.makedirs(os.path.dirname(os.path.join(src, f)), exist_ok=True)
        with open(os.path.join(ROOT, f), 'rb') as a, open(os.path.join(src, f), 'wb') as b:
            b.write(a.read())
    os.makedirs(home)
    os.makedirs(work)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(('PIP_', 'PYTHON', 'AFF_', 'MXNET_'))}
    env.update(HOME=home, PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT='1',
               PIP_DISABLE_PIP_VERSION_CHECK='1', OMP_NUM_THREADS='1')
    res = subprocess.run([sys.executable, '-m', 'venv', '--without-pip', venv], env=env,
                         capture_output=True, text=True, timeout=TIMEOUT)
    if res.returncode:
        pytest.skip('python -m venv does not work here: %s' % res.stderr.strip()[-300:])
    python = os.path.join(venv, 'bin', 'python')
    site_dir = subprocess.run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                              env=env, capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site_dir, 'aff_test_parent.pth'), 'w') as f:
        f.write('\n'.join(visible_dirs()) + '\n')
    res = subprocess.run([python, '-m', 'pip', 'install', '--quiet', '--no-index', '--no-build-isolation',
                          '--no-deps', '--no-compile', src], env=env, capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert res.returncode == 0, 'pip install failed:\n' + res.stdout[-2000:] + res.stderr[-3000:]
    return Installed(venv, site_dir, home, work, env)


@pytest.mark.slow
def test_the_packages_scripts_data_and_commands_are_installed(installed):
    files = project_files()
    missing = [f for f in package_files(files) if not os.path.isfile(os.path.join(installed.site, f))]
    assert missing == [], 'tracked files under net/ or utils/ not in the built package'
    for script in SCRIPTS:
        assert os.path.isfile(os.path.join(installed.site, script)), script
    for command in console.TOOLS:
        assert os.access(installed.bin(command), os.X_OK), command
    res = installed.run([installed.bin('python'), '-c',
                         'import net, utils.paths as p, train_cifar; '
                         'print(net.__file__); print(train_cifar.__file__); print(p.CHECKOUT)'])
    assert res.returncode == 0, res.stderr
    net_file, script_file, checkout = res.stdout.split()
    assert net_file.startswith(installed.site + os.sep) and script_file.startswith(installed.site + os.sep)
    assert checkout == 'False'
    res = installed.run([installed.bin('aff-train-cifar'), '--help'])
    assert res.returncode == 0 and 'usage' in res.stdout and '--dataset' in res.stdout, res.stderr


@pytest.mark.slow
def test_reproduce_names_the_installed_scripts_and_writes_nothing(installed):
    res = installed.run([installed.bin('aff-reproduce'), '--table', '4', '--scenario', 'resnet', '--b', '1'])
    assert res.returncode == 0, res.stderr
    assert 'does not exist yet' not in res.stdout and 'not runnable yet' not in res.stdout
    commands = [shlex.split(line) for line in res.stdout.splitlines() if line.startswith('python ')]
    assert len(commands) == 7
    for argv in commands:
        assert argv[1] == os.path.join(installed.site, 'train_cifar.py') and os.path.isfile(argv[1])
    assert os.listdir(installed.work) == []


@pytest.mark.slow
def test_compare_without_arguments_reads_the_bundled_official_logs(installed):
    res = installed.run([installed.bin('aff-compare')])
    assert res.returncode == 0, res.stderr
    bundled = os.path.join(installed.site, 'utils', 'official_logs')
    assert 'Official logs: `%s`' % bundled in res.stdout
    assert '0.8357 @635' in res.stdout  # the HEAD AFF-ResNet-32 fine-label log, found and parsed


@pytest.mark.slow
def test_models_and_the_checkpoint_folder_of_an_installed_package(installed):
    res = installed.run([installed.bin('aff-models'), 'cifar_aff_resnet20_b1', '--classes', '10'])
    assert res.returncode == 0, res.stderr
    assert 'cifar_aff_resnet20_b1' in res.stdout and 'trainable' in res.stdout
    res = installed.run([installed.bin('python'), '-c', (
        'from net import model_store as ms\n'
        'print(ms.REPO_PARAMS_DIR)\n'
        'print(ms.os.pathsep.join(ms.search_dirs()))\n'
        'try:\n'
        '    ms.find_checkpoint("cifar_aff_resnet32")\n'
        'except ms.CheckpointError as e:\n'
        '    print(e)\n')])
    assert res.returncode == 0, res.stderr
    params_dir, dirs, message = res.stdout.splitlines()
    user = os.path.join(installed.home, '.mxnet', 'models')
    assert params_dir == user and dirs.split(os.pathsep) == [user]
    assert 'put it in %s ' % user in message and installed.site not in message

