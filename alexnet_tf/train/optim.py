"""Optimizers, weight decay and learning-rate schedules, from ``config.train``.

The paper's update (Sec. 5) is
    v <- 0.9 v - 0.0005 lr w - lr dL/dw ;  w <- w + v,
i.e. plain momentum SGD on the gradient of ``L + 0.0005/2 |w|^2``: the decay is
*coupled* (it goes through the momentum). Keras 3's ``weight_decay`` argument is
decoupled (``w -= lr * wd * w`` outside the momentum), so "coupled" mode uses
`CoupledSGD`, Keras' SGD whose update adds ``wd * w`` to the gradient of every
decayed variable, all in one XLA-compiled update (one cluster for all variables with one
replica, one per variable on each device with more).

Which variables are decayed: kernels always; biases only with
``train.decay_biases`` (the paper does not say; Caffe's bvlc_alexnet does not decay
them); BatchNorm scales and offsets never (modern practice, Goyal et al. 2017).

Per-layer learning-rate multipliers (``train.lr_multipliers``, fine-tuning): Caffe's
``lr_mult``. Caffe's SGD solver adds the decay to the gradient and then scales the sum
by the layer's rate (``sgd_solver.cpp``: Regularize, then ComputeUpdateValue with
``local_rate = rate * lr_mult``), so the multiplier scales the layer's whole update,
decay included. Here every optimizer does the same: `CoupledSGD` runs
``v <- momentum v - lr m (g + wd w)``, and Keras' SGD and AdamW (`LayerRateSGD`,
`LayerRateAdamW`) take ``lr m`` in their update and in their decoupled decay
``w <- w - lr m wd w``.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from alexnet_tf.train.finetune import owning_layer


def is_decayed(variable, decay_biases: bool) -> bool:
    """Whether weight decay applies to a model variable, by its Keras path."""
    path = getattr(variable, "path", None)
    if not isinstance(path, str):
        raise TypeError(f"Weight decay is chosen by a Keras variable's path (.../kernel, "
                        f".../bias); got {variable!r}, which has no path.")
    name = path.split("/")[-1]
    if name == "kernel":
        return True
    if name == "bias":
        return decay_biases
    return False  # BatchNorm gamma/beta/moving statistics


def _coupled_sgd_update(variable, velocity, gradient, learning_rate, *, weight_decay,
                        momentum, nesterov, lr_multiplier=1.0):
    """One variable's step of Sec. 5's update, in Keras SGD's arithmetic order:
    ``g' = g + wd w;  v <- momentum v - lr g';  w <- w + v`` (Nesterov:
    ``w <- w + momentum v - lr g'``), with ``lr`` times the variable's layer's
    ``lr_multiplier`` (Caffe's lr_mult). ``velocity`` is None when momentum is 0."""
    dtype = variable.dtype
    gradient = tf.cast(gradient, dtype)
    learning_rate = tf.cast(learning_rate, dtype)
    if lr_multiplier != 1.0:
        learning_rate = learning_rate * tf.cast(lr_multiplier, dtype)
    if weight_decay:
        gradient = gradient + tf.cast(weight_decay, dtype) * variable
    if velocity is None:
        variable.assign_sub(gradient * learning_rate)
        return
    momentum = tf.cast(momentum, dtype)
    new_velocity = velocity * momentum - gradient * learning_rate
    velocity.assign(new_velocity)
    if nesterov:
        variable.assign_add(new_velocity * momentum - gradient * learning_rate)
    else:
        variable.assign_add(new_velocity)


# One XLA cluster per variable: the decay, the velocity and the weight update become one
# pass over the variable instead of Keras' separate Mul/Sub/AddV2/AssignAdd kernels
# (docs/BENCHMARKS.md: the update of the paper model's 61M parameters, 90 -> 38 ms on
# CPU). Variables are arguments, not captures, so one trace serves every variable of a
# shape and every replica of a MirroredStrategy (each passes its own copy).
_fused_coupled_sgd_update = tf.function(_coupled_sgd_update, jit_compile=True)


def _coupled_sgd_update_all(variables, velocities, gradients, learning_rate, *,
                            weight_decays, momentum, nesterov, lr_multipliers):
    for variable, velocity, gradient, weight_decay, lr_multiplier in zip(
            variables, velocities, gradients, weight_decays, lr_multipliers):
        _coupled_sgd_update(variable, velocity, gradient, learning_rate,
                            weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                            lr_multiplier=lr_multiplier)


# With one replica, all variables in one XLA cluster: one launch instead of one per
# variable, and XLA schedules the passes together (measured 1.043x the per-variable
# clusters for the whole paper training step on 2 CPU cores, docs/BENCHMARKS.md).
_fused_coupled_sgd_update_all = tf.function(_coupled_sgd_update_all, jit_compile=True)


def _local_copy(slot, variable):
    """The copy of an optimizer slot on ``variable``'s device.

    Under tf.distribute the slot is a distributed variable and ``variable`` one replica's
    copy of a model variable. The fused update is given the slot's plain copy: given the
    distributed variable itself, it updated variables of equal shapes wrongly (the fc6
    and fc7 biases of a MirroredStrategy step, TF 2.21; tests/test_optim.py).
    """
    copies = tf.distribute.get_strategy().experimental_local_results(slot)
    if len(copies) == 1:
        return copies[0]
    for copy in copies:
        if copy.device == variable.device:
            return copy
    raise ValueError(f"No copy of optimizer slot {slot.name!r} is on the device of "
                     f"{variable.name!r} ({variable.device!r}); the slot's copies are on "
                     f"{[c.device for c in copies]}.")


def check_lr_multipliers(lr_multipliers) -> dict[str, float]:
    """``{layer: multiplier}`` with every multiplier a finite number > 0, or ValueError."""
    result = {}
    for layer, value in dict(lr_multipliers or {}).items():
        if (not isinstance(layer, str) or isinstance(value, bool)
                or not isinstance(value, (int, float)) or not 0 < value < float("inf")):
            raise ValueError(f"lr_multipliers maps layer names to numbers > 0 (Caffe's "
                             f"lr_mult); got {layer!r}: {value!r}.")
        result[layer] = float(value)
    return result


class LayerRates:
    """Mixin for a Keras optimizer: Caffe's ``lr_mult`` per layer (``lr_multipliers``,
    ``{layer name: multiplier}``; layers it does not name keep 1).

    A variable's layer is its Keras path's first part (`finetune.owning_layer`:
    ``conv3_bn/gamma`` belongs to ``conv3``). The optimizer's update and its decoupled
    weight decay both use ``learning_rate * multiplier``, so the layer's whole step
    scales, as in Caffe's solvers.
    """

    def _init_layer_rates(self, lr_multipliers) -> None:
        self.lr_multipliers = check_lr_multipliers(lr_multipliers)
        self._variable_lr_multipliers = ()

    def build(self, variables):
        super().build(variables)
        layers = [owning_layer(getattr(v, "path", None) or v.name) for v in variables]
        unused = sorted(set(self.lr_multipliers) - set(layers))
        if unused:
            raise ValueError(f"lr_multipliers name layers {unused} that have no trainable "
                             f"variable among {sorted(set(layers))}.")
        self._variable_lr_multipliers = tuple(self.lr_multipliers.get(layer, 1.0)
                                              for layer in layers)

    def lr_multiplier(self, variable) -> float:
        """The multiplier of ``variable`` (a model variable or one replica's copy)."""
        return self._variable_lr_multipliers[self._get_variable_index(variable)]

    def update_step(self, gradient, variable, learning_rate):
        multiplier = self.lr_multiplier(variable)
        if multiplier != 1.0:
            learning_rate = tf.cast(learning_rate, variable.dtype) * tf.cast(multiplier,
                                                                             variable.dtype)
        super().update_step(gradient, variable, learning_rate)

    def _apply_weight_decay(self, variables):
        """Keras' decoupled decay ``w <- w - lr wd w`` (its TensorFlow backend's, per
        replica), with ``lr`` times the variable's multiplier."""
        if self.weight_decay is None:
            return
        multipliers = [self.lr_multiplier(v) for v in variables]

        def decay(distribution, variables, multipliers):
            def decay_one(variable, multiplier):
                if self._use_weight_decay(variable):
                    lr = tf.cast(self.learning_rate, variable.dtype)
                    if multiplier != 1.0:
                        lr = lr * tf.cast(multiplier, variable.dtype)
                    variable.assign_sub(variable * tf.cast(self.weight_decay, variable.dtype) * lr)

            for variable, multiplier in zip(variables, multipliers):
                if isinstance(variable, keras.Variable):
                    variable = variable.value
                distribution.extended.update(variable, decay_one, args=(multiplier,),
                                             group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(
            decay, self._distribution_strategy, variables, multipliers)

    def get_config(self):
        config = super().get_config()
        config.update(lr_multipliers=dict(self.lr_multipliers))
        return config


@keras.saving.register_keras_serializable(package="alexnet_tf")
class LayerRateSGD(LayerRates, keras.optimizers.SGD):
    """Keras' SGD (momentum, Nesterov, decoupled decay) with per-layer learning-rate
    multipliers (`LayerRates`)."""

    def __init__(self, *args, lr_multipliers=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_layer_rates(lr_multipliers)


@keras.saving.register_keras_serializable(package="alexnet_tf")
class LayerRateAdamW(LayerRates, keras.optimizers.AdamW):
    """Keras' AdamW with per-layer learning-rate multipliers (`LayerRates`): both the
    Adam step and the decoupled decay of a layer use ``learning_rate * multiplier``."""

    def __init__(self, *args, lr_multipliers=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_layer_rates(lr_multipliers)


@keras.saving.register_keras_serializable(package="alexnet_tf")
class CoupledSGD(LayerRates, keras.optimizers.SGD):
    """Momentum SGD with the paper's coupled weight decay (Sec. 5), in one fused update.

    ``v <- momentum v - lr (g + wd w);  w <- w + v`` for decayed variables (kernels;
    biases with ``decay_biases``; never BatchNorm's gamma/beta, see `is_decayed`), and
    Keras' SGD update for the rest; ``nesterov=True`` is Keras' Nesterov form with the
    same decayed gradient. The state is Keras SGD's (``momentums``, ``iterations``,
    ``learning_rate``), so checkpoints of either load into the other.

    Under ``keras.optimizers.LossScaleOptimizer`` this optimizer receives unscaled
    gradients, so the decay term needs no loss-scale factor. ``fused=False`` runs the same
    arithmetic as separate TF ops, for a device where XLA fails; the two agree to float32
    rounding (XLA may contract a multiply-add). ``lr_multipliers`` (``{layer:
    multiplier}``, Caffe's lr_mult, `LayerRates`) scale a layer's ``lr``, so
    ``v <- momentum v - lr m (g + wd w)``, as Caffe's solver.
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, nesterov=False,
                 coupled_weight_decay=0.0005, decay_biases=False, fused=True,
                 lr_multipliers=None, **kwargs):
        if kwargs.get("weight_decay"):
            raise ValueError(
                f"CoupledSGD takes coupled_weight_decay (Sec. 5, through the momentum); got "
                f"also weight_decay={kwargs['weight_decay']!r} (Keras' decoupled decay). Use "
                f"keras.optimizers.SGD(weight_decay=...) for decoupled decay.")
        if (isinstance(coupled_weight_decay, bool)
                or not isinstance(coupled_weight_decay, (int, float))
                or not coupled_weight_decay >= 0):
            raise ValueError(f"coupled_weight_decay must be a number >= 0 (the paper's "
                             f"0.0005); got {coupled_weight_decay!r}.")
        for name, value in (("decay_biases", decay_biases), ("fused", fused),
                            ("nesterov", nesterov)):
            if not isinstance(value, bool):
                raise ValueError(f"CoupledSGD {name} must be True or False; got {value!r}.")
        super().__init__(learning_rate=learning_rate, momentum=float(momentum),
                         nesterov=nesterov, **kwargs)
        self.coupled_weight_decay = float(coupled_weight_decay)
        self.decay_biases = decay_biases
        self.fused = fused
        self._init_layer_rates(lr_multipliers)

    def _update_arguments(self, gradient, variable):
        """(velocity, dense gradient, weight decay, lr multiplier) of one variable's update.

        ``variable`` is a plain tf.Variable (one replica's copy under tf.distribute); the
        Keras variable the optimizer was built with carries the path that decides the decay.
        """
        index = self._get_variable_index(variable)
        velocity = (_local_copy(self.momentums[index].value, variable)
                    if self.momentum != 0 else None)
        if isinstance(gradient, tf.IndexedSlices):
            # The decay touches every row, so the update is dense anyway.
            gradient = tf.convert_to_tensor(gradient)
        decayed = is_decayed(self._trainable_variables[index], self.decay_biases)
        return (velocity, gradient, self.coupled_weight_decay if decayed else 0.0,
                self._variable_lr_multipliers[index])

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        """One replica (no strategy, or one device): every variable's update in one XLA
        cluster. More replicas: Keras' per-variable `update_step` on each device."""
        if not self.fused or distribution.num_replicas_in_sync != 1:
            return super()._distributed_tf_update_step(distribution, grads_and_vars,
                                                       learning_rate)
        variables, velocities, gradients, decays, multipliers = [], [], [], [], []
        for gradient, variable in grads_and_vars:
            # The plain tf.Variable (a one-device strategy wraps it): see `_local_copy`.
            (variable,) = distribution.experimental_local_results(variable)
            velocity, gradient, decay, multiplier = self._update_arguments(gradient, variable)
            variables.append(variable)
            velocities.append(velocity)
            gradients.append(gradient)
            decays.append(decay)
            multipliers.append(multiplier)
        _fused_coupled_sgd_update_all(
            variables, velocities, gradients, tf.convert_to_tensor(learning_rate),
            weight_decays=tuple(decays), momentum=self.momentum, nesterov=self.nesterov,
            lr_multipliers=tuple(multipliers))

    def update_step(self, gradient, variable, learning_rate):
        velocity, gradient, decay, multiplier = self._update_arguments(gradient, variable)
        update = _fused_coupled_sgd_update if self.fused else _coupled_sgd_update
        update(variable, velocity, gradient,
               # A tensor, not the Keras variable: tf.function cannot take that as input.
               tf.convert_to_tensor(learning_rate),
               weight_decay=decay, momentum=self.momentum, nesterov=self.nesterov,
               lr_multiplier=multiplier)

    def get_config(self):
        config = super().get_config()
        config.update(coupled_weight_decay=self.coupled_weight_decay,
                      decay_biases=self.decay_biases, fused=self.fused)
        return config


def base_learning_rate(train_config, global_batch_size: int) -> float:
    """``train.learning_rate``, scaled linearly with the batch when
    ``train.lr_base_batch_size`` is set (Goyal et al. 2017: lr x batch / base)."""
    t = train_config
    if t.lr_base_batch_size:
        return t.learning_rate * global_batch_size / t.lr_base_batch_size
    return t.learning_rate


def create_optimizer(train_config, steps_per_epoch: int, global_batch_size: int,
                     fused: bool = True, lr_multipliers: dict[str, float] | None = None):
    """The Keras optimizer; its learning rate is a schedule or a value the loop sets.

    SGD with ``train.weight_decay_mode="coupled"`` is `CoupledSGD` (Sec. 5; ``fused``:
    its update XLA-compiled); with "decoupled" it is Keras' SGD with its own
    ``weight_decay``. With ``train.mixed_precision="float16"`` the optimizer is wrapped
    in Keras' LossScaleOptimizer (dynamic loss scaling; bfloat16 needs none).
    ``lr_multipliers`` (``{layer: multiplier}``, from ``train.lr_multipliers`` through
    `alexnet_tf.train.finetune.parse_lr_multipliers`) make Keras' SGD and AdamW
    `LayerRateSGD` and `LayerRateAdamW`, and go to `CoupledSGD`.
    """
    t = train_config
    learning_rate = learning_rate_schedule(t, steps_per_epoch,
                                           base_learning_rate(t, global_batch_size))
    if t.weight_decay_mode not in ("coupled", "decoupled"):
        raise ValueError(f"Unknown train.weight_decay_mode {t.weight_decay_mode!r}; expected "
                         f"'coupled' or 'decoupled'.")
    decoupled = t.weight_decay if t.weight_decay_mode == "decoupled" and t.weight_decay else None
    # Keras' own classes without multipliers: their arithmetic stays exactly Keras'.
    rates = {"lr_multipliers": lr_multipliers} if lr_multipliers else {}
    if t.optimizer == "sgd" and t.weight_decay_mode == "coupled":
        optimizer = CoupledSGD(learning_rate=learning_rate, momentum=t.momentum,
                               nesterov=t.nesterov, coupled_weight_decay=t.weight_decay,
                               decay_biases=t.decay_biases, fused=fused, **rates)
    elif t.optimizer == "sgd":
        optimizer = (LayerRateSGD if rates else keras.optimizers.SGD)(
            learning_rate=learning_rate, momentum=t.momentum, nesterov=t.nesterov,
            weight_decay=decoupled, **rates)
    elif t.optimizer == "adamw":
        optimizer = (LayerRateAdamW if rates else keras.optimizers.AdamW)(
            learning_rate=learning_rate, weight_decay=t.weight_decay, **rates)
    else:
        raise ValueError(f"Unknown optimizer {t.optimizer!r}.")
    if decoupled or t.optimizer == "adamw":
        names = ["gamma", "beta"] + ([] if t.decay_biases else ["bias"])
        optimizer.exclude_from_weight_decay(var_names=names)
    if t.mixed_precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


@keras.saving.register_keras_serializable(package="alexnet_tf")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 (Goyal et al. 2017), then cosine decay to 0 (Loshchilov &
    Hutter 2017, SGDR)."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = tf.cast(max(self.warmup_steps, 1), tf.float32)
        decay_steps = tf.cast(max(self.total_steps - self.warmup_steps, 1), tf.float32)
        progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        cosine = 0.5 * self.peak * (1.0 + tf.cos(3.141592653589793 * progress))
        return tf.where(step < self.warmup_steps, self.peak * (step + 1) / warmup, cosine)

    def get_config(self):
        return dict(peak=self.peak, warmup_steps=self.warmup_steps,
                    total_steps=self.total_steps)


def learning_rate_schedule(train_config, steps_per_epoch: int, peak: float):
    """A float (set by `Plateau` at epoch ends, or constant) or a step schedule."""
    t = train_config
    if t.schedule in ("constant", "plateau"):
        return peak
    if t.schedule == "cosine":
        return WarmupCosine(peak, int(round(t.warmup_epochs * steps_per_epoch)),
                            t.total_epochs * steps_per_epoch)
    raise ValueError(f"Unknown schedule {t.schedule!r}.")


class Plateau(tf.Module):
    """Sec. 5: divide the learning rate by 10 when the validation error stops improving,
    at most ``plateau_max_drops`` times; after the last drop, training may stop
    once the error stops improving again.

    Its state is variables, so a checkpoint restores the counters exactly.
    """

    def __init__(self, train_config, global_batch_size: int):
        super().__init__(name="plateau")
        t = train_config
        self.factor = t.plateau_factor
        self.patience = t.plateau_patience_epochs
        self.max_drops = t.plateau_max_drops
        self.learning_rate = tf.Variable(base_learning_rate(t, global_batch_size),
                                         trainable=False, name="lr")
        # float64: a float32 copy of 0.8 is above the float 0.8, which would count
        # an equal error as an improvement.
        self.best_error = tf.Variable(float("inf"), dtype=tf.float64, trainable=False,
                                      name="best_error")
        self.bad_epochs = tf.Variable(0, trainable=False, name="bad_epochs")
        self.drops = tf.Variable(0, trainable=False, name="drops")

    def update(self, val_error: float) -> str:
        """Records one validation error; returns "improved", "waiting", "dropped" or "stop"."""
        if val_error < float(self.best_error.numpy()):
            self.best_error.assign(val_error)
            self.bad_epochs.assign(0)
            return "improved"
        self.bad_epochs.assign_add(1)
        if int(self.bad_epochs.numpy()) < self.patience:
            return "waiting"
        self.bad_epochs.assign(0)
        if int(self.drops.numpy()) >= self.max_drops:
            return "stop"
        self.drops.assign_add(1)
        self.learning_rate.assign(self.learning_rate * self.factor)
        return "dropped"
