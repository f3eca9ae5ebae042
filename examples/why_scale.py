"""Why scale pixels? Softmax regression on MNIST as raw [0,255], unit [0,1] and standardized.

    python examples/why_scale.py              # writes docs/why_scale.png and docs/why_scale.md

The same model (784→10 softmax regression, mini-batch SGD, batch 128, fixed seed) is trained
on the three scalings produced by pixscale, over a sweep of learning rates. The table gives,
per scaling, the best learning rate, the training loss and test accuracy reached after a few
steps and at the end; the plot shows the loss at the end against the learning rate, and the
test accuracy against steps at each scaling's best learning rate.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from pixscale.pipeline import convert, fit
from pixscale.strategies import Spec

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"
RATES = [10.0**k for k in range(-7, 2)]
SCALINGS = {"raw [0,255]": Spec("none"), "unit [0,1]": Spec(), "standardize": None}
BATCH = 128


def scaled_mnist(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train and test sets under each scaling; standardize is fitted on train only."""
    train = MNIST / "train-images-idx3-ubyte.gz"
    test = MNIST / "t10k-images-idx3-ubyte.gz"
    params = folder / "mnist.params.json"
    fit(train, params, Spec("standardize"))
    data = {}
    for name, spec in SCALINGS.items():
        slug = name.split()[0]
        for split, source in (("train", train), ("test", test)):
            convert(
                source,
                folder / f"{slug}-{split}.npy",
                spec,
                params_from=params if spec is None else None,
            )
        data[name] = (
            np.load(folder / f"{slug}-train.npy").reshape(60000, -1),
            np.load(folder / f"{slug}-test.npy").reshape(10000, -1),
        )
    return data


def labels() -> tuple[np.ndarray, np.ndarray]:
    import gzip

    def read(name: str) -> np.ndarray:
        return np.frombuffer(gzip.open(MNIST / name).read(), np.uint8, offset=8).astype(np.int64)

    return read("train-labels-idx1-ubyte.gz"), read("t10k-labels-idx1-ubyte.gz")


def loss_and_accuracy(
    w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray
) -> tuple[float, float]:
    logits = x @ w + b
    logits -= logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = float(-log_probs[np.arange(len(y)), y].mean())
    return loss, float((logits.argmax(axis=1) == y).mean())


def train(
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    rate: float,
    steps: int,
    every: int,
) -> list[tuple[int, float, float]]:
    """(step, training loss on 10,000 training images, test accuracy) every ``every`` steps."""
    rng = np.random.default_rng(0)
    w = np.zeros((x.shape[1], 10))
    b = np.zeros(10)
    probe = rng.choice(len(x), 10000, replace=False)
    curve = []
    with np.errstate(all="ignore"):
        for step in range(steps + 1):
            if step % every == 0:
                loss, _ = loss_and_accuracy(w, b, x[probe], y[probe])
                _, accuracy = loss_and_accuracy(w, b, x_test, y_test)
                curve.append((step, loss if np.isfinite(loss) else float("inf"), accuracy))
                if not np.isfinite(loss):
                    break
            if step == steps:
                break
            batch = rng.integers(0, len(x), BATCH)
            xb, yb = x[batch].astype(np.float64), y[batch]
            logits = xb @ w + b
            logits -= logits.max(axis=1, keepdims=True)
            probs = np.exp(logits)
            probs /= probs.sum(axis=1, keepdims=True)
            probs[np.arange(BATCH), yb] -= 1
            w -= rate * (xb.T @ probs) / BATCH
            b -= rate * probs.mean(axis=0)
    return curve


def run(steps: int, every: int) -> dict[str, dict[str, list[tuple[int, float, float]]]]:
    y_train, y_test = labels()
    with tempfile.TemporaryDirectory() as folder:
        data = scaled_mnist(Path(folder))
        return {
            name: {f"{rate:g}": train(x, y_train, xt, y_test, rate, steps, every) for rate in RATES}
            for name, (x, xt) in data.items()
        }


def summary(results: dict[str, dict[str, list[tuple[int, float, float]]]], early: int) -> str:
    lines = [
        f"| scaling | best learning rate | loss after {early} steps | test accuracy after "
        f"{early} steps | final loss | final test accuracy | rates that diverged |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, curves in results.items():
        finals = {rate: c[-1][1] for rate, c in curves.items()}
        best = min(finals, key=lambda r: finals[r])
        curve = curves[best]
        at_early = next(point for point in curve if point[0] >= early)
        diverged = [r for r, c in curves.items() if not np.isfinite(c[-1][1]) or c[-1][1] > 10]
        lines.append(
            f"| {name} | {best} | {at_early[1]:.3f} | {at_early[2]:.2%} | {curve[-1][1]:.3f} | "
            f"{curve[-1][2]:.2%} | {', '.join(diverged) or 'none'} |"
        )
    return "\n".join(lines) + "\n"


def plot(results: dict[str, dict[str, list[tuple[int, float, float]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, curves in results.items():
        rates = [float(r) for r in curves]
        finals = [min(c[-1][1], 10.0) for c in curves.values()]
        left.plot(rates, finals, marker="o", label=name)
        best = min(curves, key=lambda r: curves[r][-1][1])
        steps = [p[0] for p in curves[best]]
        right.plot(steps, [p[2] for p in curves[best]], label=f"{name}, rate {best}")
    left.set(
        xscale="log",
        xlabel="learning rate",
        ylabel="training loss at the end (capped at 10)",
        title="Which learning rates work",
    )
    right.set(
        xlabel="SGD steps (batch 128)",
        ylabel="test accuracy",
        title="Convergence at each scaling's best rate",
        ylim=(0.6, 0.95),
    )
    for axes in (left, right):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--early", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    results = run(args.steps, args.every)
    args.out.mkdir(exist_ok=True)
    table = summary(results, args.early)
    (args.out / "why_scale.md").write_text(table)
    plot(results, args.out / "why_scale.png")
    print(table)


if __name__ == "__main__":
    main()
