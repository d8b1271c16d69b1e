"""Values of a metric over epoch records, and their best."""
import math

__all__ = ['LOWER_IS_BETTER', 'values_of', 'best_of']

LOWER_IS_BETTER = ('top1_err', 'top5_err')


def values_of(records, metric):
    """``[(epoch, value)]`` of a metric over records (EpochRecord or CSV row dicts)."""
    out = []
    for rec in records:
        value = rec.get(metric) if hasattr(rec, 'get') else None
        epoch = rec.get('epoch') if isinstance(rec, dict) else rec.epoch
        if isinstance(value, bool) or not isinstance(value, (int, float)) or epoch is None:
            continue
        if isinstance(value, float) and math.isnan(value):
            continue
        out.append((int(epoch), float(value)))
    return out


def best_of(values, metric):
    """``(epoch, value)`` of the best value (earliest on ties), or None."""
    found = None
    lower = metric in LOWER_IS_BETTER
    for epoch, value in values:
        if found is None or (value < found[1] if lower else value > found[1]):
            found = (epoch, value)
    return found
