"""Everything the training scripts share (data, recipes, logs, benchmarks, model tables).

Importing this package first configures the CPU thread count (`net._env`), which MXNet reads only once,
when it is imported.
"""
import net._env  # noqa: F401  (must run before anything imports mxnet)
