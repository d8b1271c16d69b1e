"""Packaging for the AFF (Attentional Feature Fusion) reproduction (docs/install.md).

`pip install .` installs the packages `net` and `utils` (with every non-Python file under them: the bundled
official-log copies, result tables, ...), the training scripts as the top-level modules `train_cifar`,
`train_imagenet`, `train_seg`, and one `aff-*` command per tool (utils/console.py).

The requirements here are abstract (ranges, what the code imports); requirements.txt is the exact lock
that `make venv` installs and the tests run on. Extras: `[demo]` (scikit-learn: the digits quick start),
`[coco]` (pycocotools: building the StopSign cache from COCO), `[onnx]` (onnx and onnxruntime: ONNX
export and its check, utils/export.py), `[test]` (pytest and all of those).

GPU users: MXNet's CUDA builds are separate distributions. Set the environment variable
AFF_MXNET_VARIANT to the one you want, e.g.

    AFF_MXNET_VARIANT=mxnet-cu112 pip install .

and the `mxnet` requirement becomes `mxnet-cu112>=1.9.1,<2` (its version range is kept unless the
variable carries its own, e.g. `mxnet-cu112==1.9.1`). Unset, the CPU wheel `mxnet` is required.
"""
import glob
import os
import re
import runpy

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANT_ENV = "AFF_MXNET_VARIANT"
#: packages whose every non-Python file is installed with them
DATA_PACKAGES = ("net", "utils")

REQUIREMENTS = [
    "mxnet>=1.9.1,<2",
    "gluoncv==0.10.5.post0",
    "numpy>=1.23,<1.24",      # `import mxnet` 1.9.1 fails with numpy >= 1.24 (np.bool)
    "matplotlib>=3.5",        # plots of utils.logs / compare / gradcam / seg
    "tqdm>=4.50",             # utils.train progress bars
    "pillow>=8",              # utils.augment, gradcam, the ImageNet / StopSign readers
    "opencv-python>=4.5",     # image decoding (utils.data.imagenet), the digits upsampling
]
DEMO = ["scikit-learn>=1.0"]  # utils/data/digits.py: the bundled digits of the quick start
COCO = ["pycocotools>=2.0"]   # utils/data/stopsign.py: reading COCO when building the StopSign cache
# utils/export.py (docs/onnx.md): MXNet 1.9.1's exporter imports onnx.mapping, gone in onnx 1.19
ONNX = ["onnx>=1.13,<1.19", "onnxruntime>=1.18"]
EXTRAS = {"demo": DEMO, "coco": COCO, "onnx": ONNX, "test": ["pytest>=7", "pytest-xdist>=3"] + DEMO + COCO + ONNX}


def requirements(variant=None):
    """:data:`REQUIREMENTS`; `variant` (a distribution name such as 'mxnet-cu112', optionally with its
    own version specifier) replaces `mxnet`, keeping its version range when it has none."""
    reqs = []
    for line in REQUIREMENTS:
        name, spec = re.match(r"([A-Za-z0-9._-]+)\s*(.*)", line).groups()
        if variant and name.lower() == "mxnet":
            line = variant if re.search(r"[=<>!~]", variant) else variant + spec
        reqs.append(line)
    return reqs


def package_data(root=HERE, packages=DATA_PACKAGES):
    """{package: [every file under it that is not Python source or bytecode, relative to it]}, so that
    data added under net/ or utils/ (CSV, YAML, gzipped logs) is installed without listing it here."""
    out = {}
    for package in packages:
        base = os.path.join(root, package)
        files = []
        for folder, dirs, names in os.walk(base):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
            files += [os.path.relpath(os.path.join(folder, n), base).replace(os.sep, "/")
                      for n in sorted(names)
                      if not n.endswith((".py", ".pyc", ".pyo")) and not n.startswith(".")]
        out[package] = [glob.escape(f) for f in files]
    return out


def _project(module):
    """A standalone module of the project, executed without importing the package (or mxnet)."""
    return runpy.run_path(os.path.join(HERE, "utils", module + ".py"))


if __name__ == "__main__":
    setup(
        name="openaff-gluon",
        version="0.1.0",
        description="Attentional Feature Fusion (Dai et al., WACV 2021) reproduced in MXNet Gluon",
        packages=find_packages(include=["net", "net.*", "utils", "utils.*"]),
        package_data=package_data(),
        py_modules=[os.path.splitext(s)[0] for s in _project("paths")["SCRIPTS"]],
        entry_points={"console_scripts": _project("console")["entry_points"]()},
        python_requires=">=3.11,<3.12",
        install_requires=requirements(variant=os.environ.get(VARIANT_ENV, "").strip() or None),
        extras_require=EXTRAS,
    )
