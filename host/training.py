"""Train a zoo model on its dataset and save the model, its history, curves and metadata."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from k210.core.fsutil import atomic_path, write_json_atomic

from .sidecars import meta_path


@dataclass
class TrainResult:
    model_path: Path
    history_path: Path
    curves_path: Path
    meta_path: Path
    test_accuracy: float
    test_loss: float


def train(model_def, dataset, out_dir: Path, *, epochs: int | None = None, seed: int = 0,
          limit: int | None = None, verbose: bool = True) -> TrainResult:
    import keras

    from k210.models.datasets import normalise

    keras.utils.set_random_seed(seed)
    x_train, y_train = dataset.x_train, dataset.y_train
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
    classes = len(dataset.labels)
    model = model_def.build(classes)
    recipe = model_def.recipe
    optimizer = (
        keras.optimizers.Adam(recipe.learning_rate) if recipe.optimizer == "adam"
        else keras.optimizers.SGD(recipe.learning_rate)
    )
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    epochs = epochs or recipe.epochs
    history = model.fit(
        normalise(x_train), y_train,
        validation_data=(normalise(dataset.x_test), dataset.y_test),
        epochs=epochs, batch_size=recipe.batch_size, shuffle=True,
        verbose=0, callbacks=[_EpochBar(epochs)] if verbose else [],
    )
    test_loss, test_accuracy = model.evaluate(normalise(dataset.x_test), dataset.y_test, verbose=0)

    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / f"{model_def.name}.keras"
    with atomic_path(model_path) as tmp:
        model.save(tmp)
    curves = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    history_path = write_json_atomic(out_dir / f"{model_def.name}.history.json", curves)
    curves_path = out_dir / f"{model_def.name}.curves.png"
    plot_curves(curves, curves_path, title=f"{model_def.name} on {dataset.name}")
    meta = {
        "model": model_def.name,
        "seed_tutorial": model_def.seed,
        "dataset": dataset.name,
        "dataset_source": dataset.source,
        "labels": list(dataset.labels),
        "preprocessing": model_def.preprocessing,
        "input_range": [0.0, 1.0],
        "recipe": {**model_def.recipe.__dict__, "epochs": epochs},
        "train_samples": int(len(x_train)),
        "test_samples": int(len(dataset.x_test)),
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "training_seed": seed,
    }
    meta_file = write_json_atomic(meta_path(model_path), meta)
    return TrainResult(model_path, history_path, curves_path, meta_file, float(test_accuracy), float(test_loss))


def plot_curves(history: dict[str, list[float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        epochs = np.arange(1, len(history.get(metric, [])) + 1)
        ax.plot(epochs, history.get(metric, []), label=f"train {metric}")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], label=f"test {metric}")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


class _EpochBar:
    """A Keras callback that shows one tqdm bar over epochs with the latest loss/accuracy."""

    def __new__(cls, epochs: int):
        import keras

        from k210.core.progress import progress

        class Bar(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.bar = progress(epochs, "training", unit="epoch")

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                self.bar.set_postfix(
                    loss=f"{logs.get('loss', 0):.4f}", acc=f"{logs.get('accuracy', 0):.4f}",
                    val_acc=f"{logs.get('val_accuracy', 0):.4f}",
                )
                self.bar.update(1)

            def on_train_batch_end(self, batch, logs=None):
                self.bar.update(0)  # off a terminal: the plain line every few seconds, mid-epoch too

            def on_train_end(self, logs=None):
                self.bar.close()

        return Bar()

