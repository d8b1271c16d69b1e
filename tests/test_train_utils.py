"""Training semantics: LR traces (docs/official-code.md §4.4 formula), targets, no-wd, devices, recipes."""
import math

import mxnet as mx
import numpy as np
import pytest

import net
from net.errors import AFFError
from utils import train as T
from utils.recipes import CIFAR_RECIPES, resolve


def formula(mode, lr, num_epochs, iters, warmup_epochs=0, decay_epochs=(), factor=0.1):
    """docs/official-code.md §4.4, written out independently of GluonCV: lr at update count ``u`` (1-based)."""
    total = num_epochs * iters
    w = warmup_epochs * iters

    def f(u):
        u = min(u, total - 1)  # LRSequential clamps num_update to total - 1
        if u < w:
            n = w - 1
            return lr * min(u, n) / n
        n = total - w - 1
        t = min(max(u - w, 0), n)
        if mode == 'cosine':
            return lr * (1 + math.cos(math.pi * t / n)) / 2
        steps = sum(1 for e in decay_epochs if t >= (e - warmup_epochs) * iters)
        return lr * factor ** steps
    return f


@pytest.mark.parametrize('case', [
    # released recipe: step, decays 300/450 shifted by the 10 warmup epochs, no warmup
    dict(mode='step', lr=0.2, num_epochs=640, iters=195, warmup_epochs=0, decay_epochs=(290, 440)),
    # paper recipe: step at 300 and 350 of 400
    dict(mode='step', lr=0.2, num_epochs=400, iters=390, warmup_epochs=0, decay_epochs=(300, 350)),
    # HEAD cmd_scripts: --cosine with 20 warmup epochs
    dict(mode='cosine', lr=0.2, num_epochs=640, iters=97, warmup_epochs=20),
    dict(mode='cosine', lr=0.1, num_epochs=12, iters=21, warmup_epochs=1),
])
def test_lr_trace_is_the_gluoncv_formula_at_every_iteration(case):
    sched = T.lr_schedule(case['mode'], case['lr'], case['num_epochs'], case['iters'],
                          warmup_epochs=case['warmup_epochs'],
                          decay_epochs=case.get('decay_epochs', ()))
    ref = formula(case['mode'], case['lr'], case['num_epochs'], case['iters'],
                  case['warmup_epochs'], case.get('decay_epochs', ()))
    for u in range(1, case['num_epochs'] * case['iters'] + 5):
        assert sched(u) == pytest.approx(ref(u), rel=1e-9, abs=1e-12), u


def test_lr_matches_the_official_log():
    """HEAD superclass log: 4 GPUs x 128 = 97 iterations/epoch, warmup 20, prints lr 0.010005
    after epoch 0 (docs/official-code.md §4.4)."""
    sched = T.lr_schedule('cosine', 0.2, 640, 97, warmup_epochs=20)
    assert '%f' % sched(97) == '0.010005'


def test_lr_schedule_rejects_impossible_settings():
    with pytest.raises(AFFError, match='batch'):
        T.lr_schedule('step', 0.1, 10, 0)
    with pytest.raises(AFFError, match='warmup'):
        T.lr_schedule('cosine', 0.1, 5, 10, warmup_epochs=5)


def test_smooth_one_hot_uses_all_outputs():
    """K = number of classifier outputs: 100 even if only 20 labels occur
    (docs/official-code.md §10 item 11)."""
    t = T.smooth_one_hot(mx.nd.array([3, 0]), 100, 0.1).asnumpy()
    assert t.shape == (2, 100)
    assert t[0, 3] == pytest.approx(1 - 0.1 + 0.1 / 100)
    assert t[0, 4] == pytest.approx(0.1 / 100)
    np.testing.assert_allclose(t.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(T.smooth_one_hot(mx.nd.array([1]), 3).asnumpy(), [[0, 1, 0]])


def test_mixup_reverses_the_shard():
    x = mx.nd.arange(4).reshape((4, 1))
    t = mx.nd.one_hot(mx.nd.array([0, 1, 2, 3]), 4)
    mx_, mt = T.mixup(x, t, 0.75)
    np.testing.assert_allclose(mx_.asnumpy()[:, 0], 0.75 * np.arange(4) + 0.25 * np.arange(4)[::-1])
    np.testing.assert_allclose(mt.asnumpy()[0], [0.75, 0, 0, 0.25])
    same = T.mixup(x, t, 1.0)
    assert same[0] is x and same[1] is t


def test_mixup_is_per_device_shard():
    """Each shard is mixed with its own reverse, not with the whole batch (official)."""
    ctx = [mx.cpu(0), mx.cpu(1)]
    batch = mx.nd.arange(8).reshape((8, 1))
    shards = T.split(batch, ctx)
    mixed = [T.mixup(s, s, 0.5)[0].asnumpy()[:, 0] for s in shards]
    np.testing.assert_allclose(mixed[0], [1.5] * 4)
    np.testing.assert_allclose(mixed[1], [5.5] * 4)


def test_no_wd_exempts_gamma_beta_and_biases_only():
    model = net.get_model('cifar_aff_resnet20_b1', classes=10)
    model.initialize()
    names = set(T.no_wd_names(model.collect_params()))
    params = model.collect_params()
    assert names and all(n.endswith(('gamma', 'beta', 'bias')) for n in names)
    assert not any(n.endswith('weight') for n in names)
    sched = T.lr_schedule('cosine', 0.1, 2, 1)
    trainer = T.make_trainer(model, sched, 0.1, 1e-4, 0.9, no_wd=True)
    assert trainer._optimizer.momentum == 0.9 and type(trainer._optimizer).__name__ == 'NAG'
    for name, p in params.items():
        assert p.wd_mult == (0.0 if name in names else 1.0)


def test_contexts():
    ctx, note = T.contexts('', 2)
    assert ctx == [mx.cpu(0), mx.cpu(1)] and 'CPU' in note
    with pytest.raises(AFFError, match='GPU'):
        T.contexts('0', 1)
    with pytest.raises(AFFError, match='comma-separated'):
        T.contexts('a,b', 1)
    # train_imagenet's flag is --num-gpus: the message names it, not --gpus
    with pytest.raises(AFFError, match=r'^--num-gpus 2 asks for GPU 1 .* use --num-gpus 0 or less'):
        T.contexts('0,1', 1, '--num-gpus', 2)
    # with no GPU visible, an explicit --gpus falls back to the CPU with a warning (official)
    ctx, notes = T.script_contexts('0', 'flag', 1)
    assert ctx == [mx.cpu(0)] and notes[0].startswith('WARNING: no GPU visible')


def _parser():
    import train_cifar
    return train_cifar.build_parser()


def _default(a):
    return 'quickstart' if a.dataset == 'digits' else 'official'


def test_recipe_sets_defaults_and_flags_override():
    args, src = resolve(_parser(), ['--recipe', 'paper', '--lr', '0.05'], CIFAR_RECIPES, _default)
    assert args.lr == 0.05 and src['lr'] == 'flag'
    assert args.num_epochs == 400 and src['num_epochs'] == 'recipe'
    assert args.lr_decay_epoch == '300,350' and args.label_mode == 'coarse' and not args.mixup
    assert args.momentum == 0.9 and src['momentum'] == 'default'


def test_official_recipe_keeps_the_official_defaults():
    args, _ = resolve(_parser(), [], CIFAR_RECIPES, _default)
    assert args.recipe == 'official'
    assert (args.batch_size, args.num_epochs, args.lr, args.lr_decay_epoch, args.gpus,
            args.channel_times, args.askc_type, args.num_workers) == \
        (128, 640, 0.2, '300,450', '0,1,2,3', 4, 'xxx', 96)


def test_released_recipe_is_the_logged_run():
    args, _ = resolve(_parser(), ['--recipe', 'released'], CIFAR_RECIPES, _default)
    assert (args.mixup, args.auto_aug, args.label_smoothing, args.no_wd, args.cosine) == \
        (True, True, True, True, False)
    assert (args.blocks, args.channel_times, args.askc_type, args.warmup_epochs,
            args.mixup_off_epoch, args.label_mode) == (5, 4, 'ASKCFuse', 10, 40, 'fine')


def test_digits_defaults_to_the_quickstart():
    args, _ = resolve(_parser(), ['--dataset', 'digits'], CIFAR_RECIPES, _default)
    assert args.recipe == 'quickstart' and args.model == 'cifar_aff_resnet20_b1'


def test_unknown_recipe_is_a_usage_error():
    with pytest.raises(SystemExit):
        resolve(_parser(), ['--recipe', 'nope'], CIFAR_RECIPES, _default)


def test_paper_sota_recipe_is_the_806562e_run():
    args, _ = resolve(_parser(), ['--recipe', 'paper_sota'], CIFAR_RECIPES, _default)
    assert (args.mixup, args.mixup_off_epoch, args.label_smoothing, args.warmup_epochs,
            args.era, args.label_mode, args.classes, args.num_epochs, args.lr_decay_epoch) == \
        (True, 20, False, 0, 'paper', 'coarse', 100, 400, '300,350')


def test_default_data_dir_is_gluons_cache(monkeypatch, tmp_path):
    """Official command lines find the files a Gluon CIFAR100() download left in its cache."""
    import train_cifar
    monkeypatch.setenv('MXNET_HOME', str(tmp_path))
    args, _ = resolve(_parser(), ['--dataset', 'cifar100'], CIFAR_RECIPES, _default)
    assert train_cifar.data_dir(args) == str(tmp_path / 'datasets' / 'cifar100')
    args, _ = resolve(_parser(), ['--data-dir', '~/x'], CIFAR_RECIPES, _default)
    assert train_cifar.data_dir(args).endswith('/x') and '~' not in train_cifar.data_dir(args)


# ----------------------------------------------------------------------------- hybridize / kvstore
def _bn_trace(hybridize, steps=4):
    """BatchNorm moving mean as read after every training step (and after a final forward)."""
    mx.random.seed(0)
    model = net.get_model('cifar_aff_resnet20_b1', classes=10)
    model.initialize(mx.init.MSRAPrelu())
    hybridize(model)
    trainer = mx.gluon.Trainer(model.collect_params(), 'sgd', {'learning_rate': 0.0})
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    stat = model._collect_params_with_prefix()['features.2.0.resfwd.0.running_mean']
    rng, trace = np.random.RandomState(1), []
    for _ in range(steps):
        x = mx.nd.array(rng.standard_normal((4, 3, 32, 32)))
        with mx.autograd.record():
            loss = loss_fn(model(x), mx.nd.array(rng.randint(0, 10, 4)))
        loss.backward()
        trainer.step(4)
        trace.append(stat.data().asnumpy().copy())
    model(x).wait_to_read()
    trace.append(stat.data().asnumpy().copy())
    return np.array(trace)


def test_hybridize_for_training_keeps_batchnorm_statistics_exact_on_cpu():
    imperative = _bn_trace(lambda m: None)
    ours = _bn_trace(lambda m: T.hybridize_for_training(m, [mx.cpu()]))
    np.testing.assert_allclose(ours, imperative, rtol=1e-5, atol=1e-9)
    assert np.abs(np.diff(imperative, axis=0)[:-1]).min(axis=1).max() > 0   # they do move
    # what hybridize_for_training avoids: static_shape on the CPU shows stale statistics
    # (MXNet 1.9.1; if this starts failing, MXNet no longer has the problem)
    static = _bn_trace(lambda m: m.hybridize(static_alloc=True, static_shape=True))
    assert np.abs(static[:-1] - imperative[:-1]).max() > 1e-2 * np.abs(imperative).max()
    model = net.get_model('cifar_aff_resnet20_b1')
    note = T.hybridize_for_training(model, [mx.cpu()])
    assert 'static_alloc=True, without static_shape' in note
    flags = dict(model._flags)
    assert flags['static_alloc'] is True and not flags.get('static_shape')


def _two_context_trace(hybridize, steps=3):
    """Each context's BatchNorm statistics and a weight after every step of a 2-context run."""
    ctx = [mx.cpu(0), mx.cpu(1)]
    mx.random.seed(0)
    model = net.get_model('cifar_aff_resnet20_b1', classes=10)
    model.initialize(mx.init.MSRAPrelu(), ctx=ctx)
    hybridize(model)
    trainer = mx.gluon.Trainer(model.collect_params(), 'sgd', {'learning_rate': 0.01,
                                                               'momentum': 0.9})
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    params = model._collect_params_with_prefix()
    stat, weight = params['features.2.0.resfwd.0.running_mean'], params['features.1.weight']
    rng, trace = np.random.RandomState(1), []
    for _ in range(steps):
        xs = T.split(mx.nd.array(rng.standard_normal((8, 3, 32, 32))), ctx)
        ys = T.split(mx.nd.array(rng.randint(0, 10, 8)), ctx)
        with mx.autograd.record():
            losses = [loss_fn(model(x), y) for x, y in zip(xs, ys)]
        for loss in losses:
            loss.backward()
        trainer.step(8)
        trace.append(np.concatenate([stat.data(c).asnumpy() for c in ctx] +
                                    [weight.data(ctx[0]).asnumpy().ravel()]))
    return np.array(trace)


def test_static_alloc_is_exact_on_two_cpu_contexts_and_static_shape_is_not():
    from net import cpu_speed
    ctx = [mx.cpu(0), mx.cpu(1)]

    def plain_hybridize(model, **flags):
        cpu_speed.apply(model, ctx)          # the same speed layer as ours: only the flags differ
        model.hybridize(**flags)
    plain = _two_context_trace(plain_hybridize)
    ours = _two_context_trace(lambda m: T.hybridize_for_training(m, ctx))
    np.testing.assert_array_equal(ours, plain)
    shaped = _two_context_trace(lambda m: plain_hybridize(m, static_alloc=True, static_shape=True))
    assert np.abs(shaped - plain).max() > 1e-4   # MXNet 1.9.1's problem (docs/pitfalls.md §1)


@pytest.mark.parametrize('kv,expected', [('device', None), ('local', None),
                                         ('dist_sync', True), ('dist_device_sync', True),
                                         ('dist_async', True)])
def test_distributed_trainers_update_on_the_servers(kv, expected):
    model = net.get_model('cifar_aff_resnet20_b1', classes=10)
    model.initialize()
    trainer = T.make_trainer(model, None, 0.1, 1e-4, 0.9, no_wd=True, kvstore=kv)
    assert trainer._kvstore_params['update_on_kvstore'] is expected
    assert T.states_savable(trainer) is (expected is None)


def _tiny_trainer(sched):
    dense = mx.gluon.nn.Dense(1, in_units=2)
    dense.initialize()
    return dense, T.make_trainer(dense, sched, 0.1, 1e-4, 0.9)


def test_lr_after_and_start_schedule_at():
    """lr_after(n) is the rate trainer.learning_rate shows after n real updates;
    start_schedule_at(n) makes a fresh trainer continue from there."""
    dense, trainer = _tiny_trainer(T.lr_schedule('cosine', 0.1, 4, 10, warmup_epochs=1))
    seen = []
    for _ in range(40):
        with mx.autograd.record():
            loss = dense(mx.nd.ones((1, 2))).sum()
        loss.backward()
        trainer.step(1)
        seen.append(trainer.learning_rate)
    _, fresh = _tiny_trainer(T.lr_schedule('cosine', 0.1, 4, 10, warmup_epochs=1))
    assert [T.lr_after(fresh, n + 1) for n in range(40)] == pytest.approx(seen, abs=1e-12)
    assert len(set(seen)) > 30                        # warmup and cosine, not a constant
    T.start_schedule_at(fresh, 25)
    assert fresh.learning_rate == pytest.approx(seen[24])
    fresh._optimizer._update_count(0)                 # the next update is number 26
    assert fresh.learning_rate == pytest.approx(seen[25])


def test_no_wd_survives_the_trip_to_a_parameter_server():
    """dist_* kvstores update on the servers, which receive the optimizer pickled without its
    param_dict: the wd multipliers must travel by index."""
    import pickle
    model = net.get_model('cifar_aff_resnet20_b1', classes=10)
    model.initialize()
    opt = T.make_trainer(model, None, 0.1, 1e-4, 0.9, no_wd=True, kvstore='dist_async')._optimizer
    server = pickle.loads(pickle.dumps(opt))
    assert server.param_dict == {}
    names = {i: p.name for i, p in opt.param_dict.items()}
    wds = dict(zip(names, server._get_wds(list(names))))
    exempt = set(T.no_wd_names(model.collect_params()))
    assert exempt and len(exempt) < len(names)
    for i, name in names.items():
        assert wds[i] == (0.0 if name in exempt else 1e-4), name
