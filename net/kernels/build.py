"""Build the fused AFF / MS-CAM tail library: ``python -m net.kernels.build`` (or ``make kernels``).

Compiles ``aff_tail.cc`` and the installed MXNet's ``src/lib_api.cc`` (both objects in parallel)
into ``net/kernels/_build/libaff_tail.so`` with g++ and OpenMP, and writes a stamp next to it
(sources' hash, MXNet version, machine, compiler) that :func:`net.kernels.check` compares with
the running process.  Up to date -> nothing is compiled.  Prints one line; exits 1 with a
one-line reason when it cannot build (``--optional``: exit 0 anyway, for ``make venv``).
"""
import hashlib
import importlib.util
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD_DIR = os.path.join(HERE, '_build')
LIB_NAME = 'libaff_tail.so'
LIB_PATH = os.path.join(BUILD_DIR, LIB_NAME)
SOURCES = ('aff_tail.cc', 'aff_tail_kernels.h')
#: the kernels' flags: vectorised loops need no errno and no FP traps (-fno-math-errno,
#: -fno-trapping-math); the AVX2+FMA variant gets its ISA from a target pragma, not from -m flags
KERNEL_FLAGS = ('-std=gnu++17', '-O3', '-fno-math-errno', '-fno-trapping-math', '-fopenmp',
                '-fPIC', '-Wall')
#: MXNet's lib_api glue: plain -O2 (it runs once per operator call, outside the loops)
GLUE_FLAGS = ('-std=gnu++17', '-O2', '-fPIC')
#: -Bsymbolic: the library's own symbols bind inside it.  libmxnet.so defines 134 of the same
#: lib_api C++ symbols; Horovod's MXNet module links libmxnet.so into the global symbol scope,
#: and a library loaded after it bound its op registration to libmxnet's copies: SIGFPE in the
#: library's initialisers (tests/test_horovod.py loads both)
LINK_FLAGS = ('-shared', '-fopenmp', '-s', '-Wl,-Bsymbolic')


class BuildError(RuntimeError):
    """Why the library cannot be built, in one line."""


def show_path(path):
    """``path`` relative to the repository when inside it (for one-line messages)."""
    root = os.path.dirname(os.path.dirname(HERE))
    path = os.path.abspath(path)
    return os.path.relpath(path, root) if path.startswith(root + os.sep) else path


def stamp_path(lib=LIB_PATH):
    return os.path.splitext(lib)[0] + '.json'


def sources_hash():
    h = hashlib.sha256()
    for name in SOURCES:
        with open(os.path.join(HERE, name), 'rb') as f:
            h.update(name.encode() + b'\0' + f.read() + b'\0')
    h.update(' '.join(KERNEL_FLAGS + GLUE_FLAGS + LINK_FLAGS).encode())
    return h.hexdigest()[:16]


def mxnet_files():
    """(package folder, include folder, lib_api.cc, version) of the installed MXNet."""
    spec = importlib.util.find_spec('mxnet')
    if spec is None or not spec.submodule_search_locations:
        raise BuildError('mxnet is not installed in this Python (%s)' % sys.executable)
    root = list(spec.submodule_search_locations)[0]
    include = os.path.join(root, 'include')
    glue = os.path.join(root, 'src', 'lib_api.cc')
    for path in (os.path.join(include, 'mxnet', 'lib_api.h'), glue):
        if not os.path.isfile(path):
            raise BuildError('the MXNet package has no %s (its wheel ships no custom-operator '
                             'sources)' % os.path.relpath(path, root))
    try:
        from importlib.metadata import version
        ver = version('mxnet')
    except Exception:  # noqa: BLE001  (a package without metadata)
        ver = 'unknown'
    return root, include, glue, ver


def compiler():
    cxx = os.environ.get('CXX', 'g++')
    exe = shutil.which(shlex.split(cxx)[0]) if cxx.strip() else None
    if not exe:
        raise BuildError('no C++ compiler: %r is not on PATH (install g++, or set CXX)' % cxx)
    return shlex.split(cxx)


def expected_stamp():
    """The stamp a build for this process would write (without its timing fields)."""
    ver = mxnet_files()[3]
    return {'sources': sources_hash(), 'mxnet': ver, 'machine': platform.machine()}


def read_stamp(lib=LIB_PATH):
    try:
        with open(stamp_path(lib)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def up_to_date(lib=LIB_PATH):
    stamp = read_stamp(lib)
    if stamp is None or not os.path.isfile(lib):
        return False
    want = expected_stamp()
    return all(stamp.get(k) == v for k, v in want.items())


def _run_parallel(jobs):
    """Run (label, command) jobs at once; BuildError with the first error line of a failure."""
    procs = [(label, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
             for label, cmd in jobs]
    failed = None
    for label, p in procs:
        out = p.communicate()[0].decode(errors='replace')
        if p.returncode and failed is None:
            first = next((ln for ln in out.splitlines() if 'error' in ln), out.strip()[:300])
            failed = '%s failed: %s' % (label, first.strip())
    if failed:
        raise BuildError(failed)


def build(force=False, lib=LIB_PATH):
    """Compile unless up to date; returns (path, seconds or None when nothing was compiled)."""
    if platform.machine() not in ('x86_64', 'AMD64'):
        raise BuildError('x86-64 only (this machine is %s)' % platform.machine())
    _, include, glue, _ = mxnet_files()
    if not force and up_to_date(lib):
        return lib, None
    cxx = compiler()
    t0 = time.time()
    out_dir = os.path.dirname(lib)
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix='.tmp-') as tmp:
        kernel_o, glue_o = os.path.join(tmp, 'aff_tail.o'), os.path.join(tmp, 'lib_api.o')
        _run_parallel([
            ('compiling aff_tail.cc', cxx + list(KERNEL_FLAGS) + [
                '-I' + include, '-I' + HERE, '-c', os.path.join(HERE, 'aff_tail.cc'), '-o', kernel_o]),
            ('compiling lib_api.cc', cxx + list(GLUE_FLAGS) + [
                '-I' + include, '-c', glue, '-o', glue_o])])
        tmp_lib = os.path.join(tmp, LIB_NAME)
        _run_parallel([('linking', cxx + list(LINK_FLAGS) + [kernel_o, glue_o, '-o', tmp_lib])])
        # rename, never overwrite in place: a process may have the old library mapped
        os.replace(tmp_lib, lib)
    stamp = dict(expected_stamp(), compiler=' '.join(cxx), seconds=round(time.time() - t0, 1))
    with open(stamp_path(lib) + '.tmp', 'w') as f:
        json.dump(stamp, f, indent=1)
    os.replace(stamp_path(lib) + '.tmp', stamp_path(lib))
    return lib, time.time() - t0


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(prog='python -m net.kernels.build', description=__doc__.split('\n')[0])
    ap.add_argument('--force', action='store_true', help='rebuild even when up to date')
    ap.add_argument('--optional', action='store_true',
                    help='exit 0 when the library cannot be built (make venv)')
    args = ap.parse_args(argv)
    rel = show_path(LIB_PATH)
    try:
        path, seconds = build(force=args.force)
    except (BuildError, OSError) as e:
        print('net.kernels: fused AFF kernel not built: %s; the pure MXNet path is used'
              % e, file=sys.stderr)
        return 0 if args.optional else 1
    size = os.path.getsize(path) // 1024
    if seconds is None:
        print('net.kernels: %s is up to date (%d KB)' % (rel, size))
    else:
        print('net.kernels: built %s in %.1f s (%d KB; generic x86-64 + AVX2/FMA loops)'
              % (rel, seconds, size))
    return 0


if __name__ == '__main__':
    sys.exit(main())
