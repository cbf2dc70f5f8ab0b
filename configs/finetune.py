r"""Fine-tuning a trained AlexNet on your own images (Sec. 6), each choice with its source.

    alexnet-train --config=configs/finetune.py --workdir=runs/mine \
        --config.model.init_from=weights/caffe \
        --config.data.data_dir=/data/mine --config.model.num_classes=5

``model.init_from`` (required; also ``--config=configs/finetune.py:SOURCE``) is any
model source: a directory written by tools/convert_weights.py (Caffe's bvlc_alexnet,
torchvision's alexnet), a run's work directory, a checkpoint or a ``.keras`` file. The
run adopts the source's input convention and architecture; ``data.data_dir`` holds
``train/<class>/*`` and ``val/<class>/*``; with ``model.num_classes`` other than the
source's, fc8 starts fresh. The paper does the same at scale: it pre-trains on ImageNet
Fall 2011 and fine-tunes on ILSVRC-2012 (Sec. 6).

Sources: Caffe's fine-tuning example, models/finetune_flickr_style (solver.prototxt and
train_val.prototxt: base_lr 0.001, momentum 0.9, weight_decay 0.0005, batch 50, the new
classifier at lr_mult 10 for its weights and 20 for its bias); Kornblith, Shlens, Le
2019, "Do Better ImageNet Models Transfer Better?" (CVPR): fine-tuning every layer
transfers better than training a classifier on fixed features, and the best learning
rate and weight decay depend on the dataset, so tune ``train.learning_rate`` on a
held-out split when it matters.
"""

from ml_collections import config_dict

from alexnet_tf import config as config_lib


def get_config(arg: str | None = None):
    config = config_lib.base_config()
    # The source: --config.model.init_from=SOURCE, or the config's argument. Unset, the
    # run stops before it writes anything (a fine-tuning recipe must not train from
    # scratch without a word).
    config.model.init_from = arg or config_dict.placeholder(str)
    config.data.source = "image_folder"
    # Caffe's flickr_style batch; small datasets need a batch well below their size.
    config.train.global_batch_size = 50
    # Caffe's flickr_style: "lr for fine-tuning should be lower than when starting from
    # scratch": 0.001, a tenth of bvlc_alexnet's (and Sec. 5's) 0.01.
    config.train.learning_rate = 0.001
    # The new fc8 learns 10x faster: Caffe's lr_mult 10 for its weights. Caffe's 20 for
    # its bias is bvlc_alexnet's 2x bias rate (lr_mult 1 and 2 in every layer), which
    # this package does not use (Sec. 5 has one rate), so the bias takes 10x too. The
    # multiplier scales the whole update, decay included, as Caffe's solver does.
    config.train.lr_multipliers = "fc8=10"
    # Every layer trains (Kornblith et al. 2019: fine-tuning beats fixed features); set
    # train.trainable_layers (e.g. "fc7,fc8") to freeze the rest.
    config.train.trainable_layers = ""
    # Momentum 0.9 and coupled weight decay 5e-4 are both Sec. 5's and flickr_style's
    # (the base config's). Caffe steps the rate down by 10x (gamma 0.1) every 20% of
    # its run; here by 10x when the validation error stops improving (Sec. 5's rule),
    # at most three times.
    config.train.schedule = "plateau"
    config.train.total_epochs = 30
    return config
