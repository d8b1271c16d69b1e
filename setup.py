"""Packaging for the AFF (Attentional Feature Fusion) reproduction: the `net` and `utils` packages.

The install requirements are the pins in requirements.txt (comments and blank lines skipped), so the
package and `make venv` install the same stack.

GPU users: MXNet's CUDA builds are separate distributions. Set the environment variable
AFF_MXNET_VARIANT to the one you want, e.g.

    AFF_MXNET_VARIANT=mxnet-cu112 pip install -e .

and the `mxnet==1.9.1` requirement becomes `mxnet-cu112==1.9.1` (the pinned version is kept unless the
variable carries its own, e.g. `mxnet-cu112==1.9.1`). Unset, the CPU wheel `mxnet` is required.
"""
import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANT_ENV = "AFF_MXNET_VARIANT"


def read_requirements(path=os.path.join(HERE, "requirements.txt"), variant=None):
    """The requirement lines of `path`, without comments and blank lines.

    `variant` (a distribution name such as 'mxnet-cu112', optionally with its own version specifier)
    replaces the `mxnet` requirement, keeping the pinned version when it has none.
    """
    reqs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            name, spec = re.match(r"([A-Za-z0-9._-]+)\s*(.*)", line).groups()
            if variant and name.lower() == "mxnet":
                line = variant if re.search(r"[=<>!~]", variant) else variant + spec
            reqs.append(line)
    return reqs


if __name__ == "__main__":
    setup(
        name="openaff-gluon",
        version="0.1.0",
        description="Attentional Feature Fusion (Dai et al., WACV 2021) reproduced in MXNet Gluon",
        packages=find_packages(exclude=["tests", "tests.*"]),
        python_requires=">=3.11,<3.12",
        install_requires=read_requirements(variant=os.environ.get(VARIANT_ENV, "").strip() or None),
    )
