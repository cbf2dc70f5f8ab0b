"""optim.CoupledSGD, the paper's momentum SGD with coupled weight decay (Sec. 5): its fused
(XLA) update equals the unfused one and Keras' SGD on hand-decayed gradients, eagerly,
in tf.function, in a jit-compiled step and under MirroredStrategy on two logical CPUs;
it decays only what it should; its state round-trips through checkpoints and configs."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.train import optim
from conftest import REPO_ROOT

WD = 0.0005  # Sec. 5
# Fused and unfused updates run the same arithmetic; XLA may contract a multiply-add
# into one FMA, a float32 rounding difference (~1e-7 relative) per step.
RTOL, ATOL = 2e-6, 1e-7


def _small_model(seed=0):
    """Conv (kernel + bias), BatchNorm (gamma/beta, never decayed) and Dense."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, name="conv"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.ReLU(),
        keras.layers.Flatten(),
        keras.layers.Dense(5, name="fc"),
    ])


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(6, 8, 8, 3)).astype(np.float32),
            rng.integers(0, 5, 6).astype(np.int32))


def _hand_decayed_sgd(nesterov=False):
    """The reference: Keras' own SGD, with ``wd * w`` added to the decayed gradients
    by hand (what the loop did before CoupledSGD)."""
    sgd = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=nesterov)

    def apply(gradients, variables):
        gradients = [g + WD * v if optim.is_decayed(v, False) else g
                     for g, v in zip(gradients, variables)]
        sgd.apply_gradients(zip(gradients, variables))

    return sgd, apply


def _coupled(fused, nesterov=False):
    sgd = optim.CoupledSGD(learning_rate=0.1, momentum=0.9, nesterov=nesterov,
                           coupled_weight_decay=WD, fused=fused)
    return sgd, lambda g, v: sgd.apply_gradients(zip(g, v))


def _train(make_optimizer, mode, steps=3):
    model = _small_model()
    optimizer, apply = make_optimizer()
    optimizer.build(model.trainable_variables)
    x, y = _data()

    def step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                y, logits, from_logits=True))
        variables = model.trainable_variables
        apply(tape.gradient(loss, variables), variables)
        return loss

    if mode != "eager":
        step = tf.function(step, jit_compile=mode == "jit")
    for _ in range(steps):
        step(x, y)
    return ([v.numpy() for v in model.trainable_variables],
            [m.numpy() for m in optimizer.momentums])


def _assert_all_close(actual, expected):
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nesterov"])
@pytest.mark.parametrize("mode", ["eager", "function", "jit"])
def test_fused_equals_unfused_and_keras_sgd_on_decayed_gradients(mode, nesterov):
    reference = _train(lambda: _hand_decayed_sgd(nesterov), mode)
    unfused = _train(lambda: _coupled(False, nesterov), mode)
    fused = _train(lambda: _coupled(True, nesterov), mode)
    _assert_all_close(unfused[0], reference[0])
    _assert_all_close(unfused[1], reference[1])
    _assert_all_close(fused[0], unfused[0])
    _assert_all_close(fused[1], unfused[1])
    # Not vacuous: the weights moved, and the decay made a difference of its own.
    assert max(np.abs(a - b).max() for a, b in zip(fused[0], _train(
        lambda: _coupled(True, nesterov), "eager", steps=0)[0])) > 1e-3


def test_only_kernels_decay_unless_biases_are_asked_for():
    """With zero gradients only the decay moves a variable: v = -lr wd w, w += v."""
    for decay_biases in (False, True):
        model = _small_model()
        rng = np.random.default_rng(0)
        for v in model.trainable_variables:  # biases and beta start at 0: make them not
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype(np.float32))
        optimizer = optim.CoupledSGD(learning_rate=0.1, momentum=0.9,
                                     coupled_weight_decay=0.01, decay_biases=decay_biases)
        before = {v.path.split("/", 1)[1]: v.numpy().copy() for v in model.trainable_variables}
        zeros = [tf.zeros_like(v) for v in model.trainable_variables]
        optimizer.apply_gradients(zip(zeros, model.trainable_variables))
        after = {v.path.split("/", 1)[1]: v.numpy() for v in model.trainable_variables}
        decayed = {"conv/kernel", "fc/kernel"}
        if decay_biases:
            decayed |= {"conv/bias", "fc/bias"}
        for name, value in after.items():
            if name in decayed:
                np.testing.assert_allclose(value, before[name] * (1 - 0.1 * 0.01), rtol=1e-6)
            else:  # biases (unless asked), bn/gamma, bn/beta
                np.testing.assert_array_equal(value, before[name], err_msg=name)
        assert set(after) == {"conv/kernel", "conv/bias", "bn/gamma", "bn/beta",
                              "fc/kernel", "fc/bias"}


def test_without_momentum_it_is_plain_decayed_sgd():
    layer = keras.layers.Dense(2, kernel_initializer="ones", bias_initializer="ones")
    layer.build((None, 3))
    optimizer = optim.CoupledSGD(learning_rate=0.1, momentum=0.0, coupled_weight_decay=0.01)
    grads = [tf.fill(v.shape, 2.0) for v in layer.trainable_variables]
    optimizer.apply_gradients(zip(grads, layer.trainable_variables))
    assert optimizer.momentums == []
    np.testing.assert_allclose(layer.kernel.numpy(), 1 - 0.1 * (2 + 0.01), rtol=1e-6)
    np.testing.assert_allclose(layer.bias.numpy(), 1 - 0.1 * 2, rtol=1e-6)


def test_checkpoint_round_trip_gives_the_same_next_step(tmp_path):
    """Save after two steps; a fresh model and optimizer restored from it take the same
    third step as the original (the momentum and the iteration count came back)."""
    x, y = _data()

    def make():
        model = _small_model(seed=1)
        optimizer = optim.CoupledSGD(learning_rate=0.1, momentum=0.9, coupled_weight_decay=WD)
        optimizer.build(model.trainable_variables)
        return model, optimizer

    def step(model, optimizer):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                y, model(x, training=True), from_logits=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                      model.trainable_variables))

    model, optimizer = make()
    for _ in range(2):
        step(model, optimizer)
    path = tf.train.Checkpoint(model=model, optimizer=optimizer).save(str(tmp_path / "ckpt"))
    step(model, optimizer)

    fresh_model, fresh_optimizer = make()
    status = tf.train.Checkpoint(model=fresh_model, optimizer=fresh_optimizer).restore(path)
    status.assert_existing_objects_matched()
    assert int(fresh_optimizer.iterations.numpy()) == 2
    assert np.abs(fresh_optimizer.momentums[0].numpy()).max() > 0
    step(fresh_model, fresh_optimizer)
    for a, b in zip(fresh_model.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(fresh_optimizer.momentums, optimizer.momentums, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_checkpoints_of_keras_sgd_load_into_coupled_sgd(tmp_path):
    """Same slot variables as Keras' SGD: a run checkpointed with it resumes with this."""
    model = _small_model()
    sgd = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)
    sgd.build(model.trainable_variables)
    for m in sgd.momentums:
        m.assign(tf.fill(m.shape, 0.25))
    path = tf.train.Checkpoint(optimizer=sgd).save(str(tmp_path / "sgd"))
    coupled = optim.CoupledSGD(learning_rate=0.1, momentum=0.9)
    coupled.build(model.trainable_variables)
    tf.train.Checkpoint(optimizer=coupled).restore(path).assert_existing_objects_matched()
    assert all(np.all(m.numpy() == 0.25) for m in coupled.momentums)


def test_config_round_trip_through_keras_serialization():
    optimizer = optim.CoupledSGD(learning_rate=optim.WarmupCosine(0.1, 10, 100), momentum=0.8,
                                 nesterov=True, coupled_weight_decay=1e-4, decay_biases=True,
                                 fused=False)
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(optimizer)))
    assert serialized["registered_name"] == "alexnet_tf>CoupledSGD"
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is optim.CoupledSGD
    assert (revived.momentum, revived.nesterov, revived.coupled_weight_decay,
            revived.decay_biases, revived.fused) == (0.8, True, 1e-4, True, False)
    assert isinstance(revived._learning_rate, optim.WarmupCosine)


@pytest.mark.parametrize("kwargs, message", [
    (dict(coupled_weight_decay=-1.0), r"coupled_weight_decay must be a number >= 0 .*got -1.0"),
    (dict(coupled_weight_decay="5e-4"), r"coupled_weight_decay must be .*got '5e-4'"),
    (dict(weight_decay=0.1), r"got also weight_decay=0.1 \(Keras' decoupled decay\)"),
    (dict(fused="yes"), r"fused must be True or False; got 'yes'"),
    (dict(decay_biases=1), r"decay_biases must be True or False; got 1"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        optim.CoupledSGD(**kwargs)


def test_create_optimizer_picks_coupled_sgd_only_for_coupled_sgd():
    from alexnet_tf import config as config_lib

    t = config_lib.base_config().train
    optimizer = optim.create_optimizer(t, steps_per_epoch=10, global_batch_size=128)
    assert type(optimizer) is optim.CoupledSGD and optimizer.fused
    assert (optimizer.coupled_weight_decay, optimizer.decay_biases) == (0.0005, False)
    unfused = optim.create_optimizer(t, steps_per_epoch=10, global_batch_size=128, fused=False)
    assert not unfused.fused
    t.weight_decay_mode = "decoupled"
    assert type(optim.create_optimizer(t, 10, 128)) is keras.optimizers.SGD
    t.weight_decay_mode, t.mixed_precision = "coupled", "float16"
    wrapped = optim.create_optimizer(t, 10, 128)
    assert isinstance(wrapped, keras.optimizers.LossScaleOptimizer)
    assert type(wrapped.inner_optimizer) is optim.CoupledSGD


MIRRORED_SCRIPT = textwrap.dedent("""
    import json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from alexnet_tf.train import optim

    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 8, 8).astype(np.int32)

    def run(strategy, fused):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            # fc2 and fc3 have equal shapes: each must get its own momentum slot.
            model = keras.Sequential([
                keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv"),
                keras.layers.ReLU(), keras.layers.Flatten(),
                keras.layers.Dense(8, activation="tanh", name="fc1"),
                keras.layers.Dense(8, activation="tanh", name="fc2"),
                keras.layers.Dense(8, name="fc3")])
            optimizer = optim.CoupledSGD(learning_rate=0.1, momentum=0.9,
                                         coupled_weight_decay=0.0005, fused=fused)
            optimizer.build(model.trainable_variables)

        def replica_step(x, y):
            with tf.GradientTape() as tape:
                per_example = keras.losses.sparse_categorical_crossentropy(
                    y, model(x, training=True), from_logits=True)
                loss = tf.reduce_sum(per_example) / 8  # over the global batch
            optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                          model.trainable_variables))

        @tf.function
        def step(batch):
            strategy.run(replica_step, args=batch)

        dataset = tf.data.Dataset.from_tensors((x, y)).repeat(3)
        for batch in strategy.experimental_distribute_dataset(dataset):
            step(batch)
        # Every replica's own copy, so a replica that skipped its update shows.
        copies = [[c.numpy() for c in strategy.experimental_local_results(v.value)]
                  for v in list(model.trainable_variables) + list(optimizer.momentums)]
        return copies

    single = run(tf.distribute.get_strategy(), fused=False)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out = {}
    for fused in (True, False):
        copies = run(mirrored, fused)
        out[str(fused)] = dict(
            replicas=[len(c) for c in copies],
            vs_single=max(float(np.abs(c - s[0]).max() / np.abs(s[0]).max())
                          for cs, s in zip(copies, single) for c in cs),
            between_replicas=max(float(np.abs(cs[0] - cs[1]).max()) for cs in copies))
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_equals_one_device(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    result = subprocess.run([sys.executable, str(script)], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for fused in ("True", "False"):
        assert set(out[fused]["replicas"]) == {2}, out
        assert out[fused]["vs_single"] < 1e-5, out
        assert out[fused]["between_replicas"] == 0.0, out


def test_one_device_strategy_takes_the_single_cluster_path_and_agrees():
    """A one-replica strategy wraps the variables; the all-variables XLA update must get
    the plain ones and give the same weights as the unfused update."""
    def under_strategy(fused):
        strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
        with strategy.scope():
            model = _small_model()
            sgd = optim.CoupledSGD(learning_rate=0.1, momentum=0.9,
                                   coupled_weight_decay=WD, fused=fused)
            sgd.build(model.trainable_variables)
        x, y = _data()

        @tf.function
        def step():
            def replica():
                with tf.GradientTape() as tape:
                    logits = model(x, training=True)
                    loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                        y, logits, from_logits=True))
                variables = model.trainable_variables
                sgd.apply_gradients(zip(tape.gradient(loss, variables), variables))
            strategy.run(replica)

        for _ in range(3):
            step()
        return [v.numpy() for v in model.trainable_variables]

    _assert_all_close(under_strategy(True), under_strategy(False))
    _assert_all_close(under_strategy(False), _train(lambda: _coupled(False), "function")[0])
