"""Released open-aff checkpoints (placeholder until the store lands)."""
from .errors import CheckpointError

RELEASED = []


def load_pretrained(net, name, pretrained, root=None, ctx=None):
    raise CheckpointError('pretrained weights are not available yet')
