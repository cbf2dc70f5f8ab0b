r"""The transfer demo: the demo network fine-tuned on six classes it has never seen.

    alexnet-train --config=configs/demo.py --workdir=runs/demo
    alexnet-train --config=configs/demo_finetune.py --workdir=runs/demo_finetune
    alexnet-train --config=configs/demo_finetune.py:scratch --workdir=runs/demo_scratch

The first command is the demo (its run in runs/demo is the source: ``model.init_from``;
another place: ``--config.model.init_from=DIR``). The second fine-tunes it on the
transfer set of the embedded data (``data.demo_set="transfer"``: crescents, x-crosses,
line grids, square frames, stars and zigzags, drawn by the demo's generator, none of them
among the demo's ten classes) from only 20 images per class, as the paper fine-tunes its
Fall 2011 network on ILSVRC-2012 (Sec. 6). ``:scratch`` trains the same network on the
same images for the same steps from random weights, with the demo's own from-scratch
recipe, for comparison. The run adopts the source's input convention and architecture
(configs/demo.py's), and fc8 starts fresh (6 classes; the source has 10).
"""

from alexnet_tf import config as config_lib


def get_config(arg: str | None = None):
    if arg not in (None, "", "finetune", "scratch"):
        raise ValueError(f"configs/demo_finetune.py takes 'finetune' (the default) or "
                         f"'scratch', got {arg!r}.")
    scratch = arg == "scratch"
    config = config_lib.base_config()
    # The demo network (configs/demo.py): the source's values replace these when
    # fine-tuning; from scratch they are the network.
    config.model.variant = "paper"
    config.model.image_size = 67
    config.model.width = 0.25
    config.model.init = "he"  # configs/demo.py: N(0, 0.01) does not learn at this width
    config.model.num_classes = 6
    config.data.source = "demo"
    config.data.demo_set = "transfer"
    # Few images per class, the situation fine-tuning is for.
    config.data.demo_train_per_class = 20
    config.data.demo_val_per_class = 20
    config.data.resize_size = 76
    config.data.mean_rgb = (127.5, 127.5, 127.5)
    config.data.std_rgb = (64.0, 64.0, 64.0)

    config.train.global_batch_size = 20  # 6 steps per epoch over the 120 images
    config.train.total_epochs = 10
    config.train.schedule = "cosine"  # configs/demo.py's: ends on a small learning rate
    config.train.log_every_steps = 20
    config.train.checkpoint_every_steps = 1000
    config.eval.global_batch_size = 120
    config.eval.every_epochs = 5
    if scratch:
        # configs/demo.py's recipe, which learns the demo from random weights.
        config.train.learning_rate = 0.02
        config.train.warmup_epochs = 1.0
        return config
    config.model.init_from = "runs/demo"
    # Caffe's fine-tuning example (models/finetune_flickr_style): base learning rate a
    # tenth of training from scratch (0.001 there vs 0.01; here 0.002 vs the demo's
    # 0.02), and the new fc8 at 10x (lr_mult 10 for its weights; Caffe's 20 for its bias
    # follows bvlc_alexnet's 2x bias rate, which this package does not use: 10x here).
    config.train.learning_rate = 0.002
    config.train.lr_multipliers = "fc8=10"
    config.train.warmup_epochs = 0.0  # fc8 learns at the source's rate from the start
    return config
