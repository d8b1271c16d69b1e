"""Training recipes as data.  A recipe only sets flag *defaults*: explicit flags override it.

CIFAR (``train_cifar.py --recipe NAME``):

* ``official`` -- the argparse defaults of the official HEAD ``train_cifar.py`` (docs/official-code.md §4.2),
  untouched, so that open-aff command lines mean what they meant;
* ``paper`` -- Table 2 + supplement for the ablation tables (Tables 3, 4, S1): Nesterov,
  lr 0.2, x0.1 at epochs 300 and 350, 400 epochs, batch 128 on one device, wd 1e-4 on every
  parameter, no mixup, no label smoothing, no AutoAugment, the 20 coarse labels on the
  official 100-output head -- what the paper actually ran (docs/official-code.md §4.6 item 1);
* ``released`` -- the settings recorded in the log of the released fine-label AFF-ResNet-32
  checkpoint (0.8357; docs/official-code.md §3.4, §5): 640 epochs, lr 0.2, step decay at 300/450 shifted by
  the 10 warmup epochs (290/440, as the official script did), AutoAugment, mixup alpha 1
  switched off for the last 40 epochs, label smoothing 0.1, ``--no-wd`` (which the official
  script only honours with ``--cosine``), b5 / width x4 AFF-ResNet-32 on the fine labels;
* ``paper_sota`` -- the submitted paper's CIFAR-100 AFF-ResNet-32 SOTA run as its 806562e log
  records it (0.8967 on the 20 superclasses): the 806562e host and script behaviour -- mixup
  alpha 1 always on except the last 20 epochs, no label smoothing, no AutoAugment, per-epoch
  step decay at 300/350 of 400 epochs without warmup, weight decay on every parameter;
* ``quickstart`` -- the default of ``--dataset digits``: a small AFF network on scikit-learn's
  bundled digits, a few minutes on two CPU cores.
"""
from net.errors import AFFError

__all__ = ['CIFAR_RECIPES', 'IMAGENET_RECIPES', 'SEG_RECIPES', 'resolve']

CIFAR_RECIPES = {
    'official': {},
    'paper': dict(
        batch_size=128, num_epochs=400, lr=0.2, momentum=0.9, wd=1e-4, lr_decay=0.1,
        lr_decay_epoch='300,350', warmup_epochs=0, cosine=False, mixup=False,
        label_smoothing=False, auto_aug=False, no_wd=False, label_mode='coarse', classes=100,
        era='paper'),
    'released': dict(
        batch_size=128, num_epochs=640, lr=0.2, momentum=0.9, wd=1e-4, lr_decay=0.1,
        lr_decay_epoch='300,450', warmup_epochs=10, cosine=False, mixup=True, mixup_alpha=1.0,
        mixup_off_epoch=40, label_smoothing=True, auto_aug=True, no_wd=True, label_mode='fine',
        model='resnet', askc_type='ASKCFuse', blocks=5, channel_times=4, start_layer=1,
        era='head'),
    'paper_sota': dict(
        batch_size=128, num_epochs=400, lr=0.2, momentum=0.9, wd=1e-4, lr_decay=0.1,
        lr_decay_epoch='300,350', warmup_epochs=0, cosine=False, mixup=True, mixup_alpha=1.0,
        mixup_off_epoch=20, label_smoothing=False, auto_aug=False, no_wd=False,
        label_mode='coarse', classes=100, model='resnet', askc_type='ASKCFuse', blocks=5,
        channel_times=4, start_layer=1, era='paper'),
    'quickstart': dict(
        model='cifar_aff_resnet20_b1', batch_size=32, num_epochs=15, lr=0.1, warmup_epochs=1,
        cosine=True, wd=1e-4, mixup=False, label_smoothing=False, auto_aug=False,
        num_workers=0, save_period=0, save_plot_dir=None),   # None: beside the log, not in '.'
}


#: ImageNet (``train_imagenet.py --recipe NAME``), from the official logs' Namespace lines:
#: ``paper`` = the 806562e ablation runs behind Table 3's ImageNet column (v1b hosts, 160
#: epochs, 128 per device, lr 0.075 cosine, 5 warmup epochs, label smoothing, no mixup,
#: ``--no-wd``, ``--last-gamma``, float16, RecordIO); the Table 5 rows add ``--mixup`` (alpha 0.2,
#: never switched off: 806562e's --mixup-off-epoch default 0) as ``paper_sota``.  ``released`` = the HEAD runs of
#: the four released checkpoints (240 epochs, 4 x 128, mixup 0.2 off for the last 5 epochs,
#: AutoAugment flag set -- inert with RecordIO in the official script, active here).
IMAGENET_RECIPES = {
    'official': {},
    'paper': dict(
        era='paper', batch_size=128, num_epochs=160, lr=0.075, lr_mode='cosine', warmup_epochs=5,
        label_smoothing=True, mixup=False, mixup_alpha=0.2, mixup_off_epoch=0, no_wd=True,
        last_gamma=True, dtype='float16', use_rec=True, start_layer=3),
    'released': dict(
        era='head', batch_size=128, num_epochs=240, lr=0.075, lr_mode='cosine', warmup_epochs=5,
        label_smoothing=True, mixup=True, mixup_alpha=0.2, mixup_off_epoch=5, no_wd=True,
        last_gamma=True, dtype='float16', use_rec=True, start_layer=3, auto_aug=True,
        num_layer=50),
}
# Table 5 (the SOTA rows): the paper recipe plus mixup, as the comment above says
IMAGENET_RECIPES['paper_sota'] = dict(IMAGENET_RECIPES['paper'], mixup=True)

#: Related methods (net/afinet.py, net/acmix.py), as their papers state them.  ``afinet`` (AFINet
#: §4.3): momentum SGD 0.9 (Nesterov not stated: plain), wd 1e-4 on every parameter, batch 64;
#: CIFAR 300 epochs, lr 0.1 / 10 at 50 % and 75 % (DenseNet's proportion: 150, 225), the 100 fine
#: labels, standard crop + flip; ImageNet 90 epochs, lr 0.1 * 64 / 256 = 0.025 / 10 at 30, 60, 80,
#: batch 64 in total (one device), no warmup, label smoothing or mixup (none stated).
#: ``acmix`` (ACmix supplement §B, ImageNet only, following SAN): momentum SGD, batch 256 on 8 GPUs
#: (32 per device: run with --num-gpus 8), 100 epochs, cosine from 0.1, label smoothing 0.1; no
#: warmup (the released script warms up 5 epochs, the paper does not say so), wd 1e-4 on every
#: parameter (SAN; the release decays rate1/rate2 too).  float32 for both (fp16 not stated).
CIFAR_RECIPES['afinet'] = dict(
    batch_size=64, num_epochs=300, lr=0.1, momentum=0.9, wd=1e-4, lr_decay=0.1,
    lr_decay_epoch='150,225', warmup_epochs=0, cosine=False, mixup=False, label_smoothing=False,
    auto_aug=False, no_wd=False, label_mode='fine', optimizer='sgd')
IMAGENET_RECIPES['afinet'] = dict(
    batch_size=64, num_epochs=90, lr=0.025, momentum=0.9, wd=1e-4, lr_mode='step', lr_decay=0.1,
    lr_decay_epoch='30,60,80', warmup_epochs=0, label_smoothing=False, mixup=False, no_wd=False,
    dtype='float32', use_rec=True, optimizer='sgd')
IMAGENET_RECIPES['acmix'] = dict(
    batch_size=32, num_epochs=100, lr=0.1, momentum=0.9, wd=1e-4, lr_mode='cosine',
    warmup_epochs=0, label_smoothing=True, mixup=False, no_wd=False, dtype='float32',
    use_rec=True, optimizer='sgd')


#: Segmentation (``train_seg.py --recipe NAME``).  ``paper`` = Table 2's StopSign row and the
#: supplement: AdaGrad, lr 0.01, poly schedule, 300 epochs, batch 32, Kaiming init, cross
#: entropy, r = 4 (the fusion default).  Not in the paper, our choices: poly power 0.9 and weight
#: decay 1e-4 (GluonCV's segmentation defaults), base size 512 / crop 480 (the defaults of the
#: author's open-acm segmentation script).  ``quickstart`` = the offline synthetic-StopSign demo
#: (``--dataset synthetic-stopsign``): a few minutes on two CPU cores.
SEG_RECIPES = {
    'paper': dict(
        optimizer='adagrad', lr=0.01, lr_mode='poly', power=0.9, wd=1e-4, epochs=300,
        batch_size=32, init='kaiming', base_size=512, crop_size=480),
    'quickstart': dict(
        model='stopsign_aff_fpn_resnet20_b1', optimizer='adagrad', lr=0.01, lr_mode='poly',
        power=0.9, wd=1e-4, epochs=4, batch_size=16, init='kaiming', base_size=64, crop_size=64,
        synthetic_train=256, synthetic_val=64, num_workers=0),
}


def resolve(parser, argv, recipes, default_recipe):
    """Parse ``argv`` with ``parser`` after applying the chosen recipe's defaults.

    Returns ``(args, sources)``: ``sources[name]`` is ``'flag'``, ``'recipe'`` or ``'default'``
    for every option, so the log can say where each value came from.
    """
    probe, _ = parser.parse_known_args(argv)
    name = getattr(probe, 'recipe', None) or default_recipe(probe)
    if name not in recipes:
        raise AFFError('unknown --recipe %r; use one of %s' % (name, ', '.join(recipes)))
    recipe = recipes[name]
    known = {a.dest for a in parser._actions}
    unknown = set(recipe) - known
    assert not unknown, 'recipe %s sets unknown options %s' % (name, sorted(unknown))
    defaults = parser.parse_args([])
    parser.set_defaults(**recipe)
    args = parser.parse_args(argv)
    args.recipe = name
    sources = {}
    explicit = _explicit_dests(parser, argv)
    for dest in vars(args):
        if dest in explicit:
            sources[dest] = 'flag'
        elif dest in recipe and recipe[dest] != getattr(defaults, dest, None):
            sources[dest] = 'recipe'
        else:
            sources[dest] = 'default'
    return args, sources


def _explicit_dests(parser, argv):
    """Options given on the command line (long/short flags, ``--x=v`` too)."""
    by_flag = {}
    for action in parser._actions:
        for flag in action.option_strings:
            by_flag[flag] = action.dest
    out = set()
    for token in argv:
        if not token.startswith('-'):
            continue
        flag = token.split('=', 1)[0]
        if flag in by_flag:
            out.add(by_flag[flag])
        else:  # argparse accepts unambiguous prefixes
            hits = {d for f, d in by_flag.items() if f.startswith(flag) and flag.startswith('--')}
            if len(hits) == 1:
                out |= hits
    return out
