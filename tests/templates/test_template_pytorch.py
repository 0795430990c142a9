"""The PyTorch template: its task learns (fast, where PyTorch is installed) and a full
``glade new`` + ``glade run`` in its own environment reaches the stated accuracy (slow)."""

from __future__ import annotations

import numpy as np
import pytest

ROUNDS = 5
ACCURACY = 0.85  # centralized accuracy on the held-out digits after ROUNDS rounds


@pytest.mark.torch
def test_task_partitions_trains_and_round_trips_weights(import_template):
    pytest.importorskip("torch")
    from glade import ArrayRecord

    task = import_template("pytorch")
    nodes = [{"partition-id": i, "num-partitions": 4} for i in range(4)]
    loaders = [task.load_data(node, batch_size=32) for node in nodes]
    test = task.load_centralized_test()
    sizes = [len(train.dataset) + len(val.dataset) for train, val in loaders]
    assert sum(sizes) + len(test.dataset) == 1797  # every image in exactly one place
    model = task.init_model(seed=0)
    _, before = task.evaluate(model, test)
    loss = task.train(model, loaders[0][0], epochs=5, lr=0.005, seed=1)
    _, after = task.evaluate(model, test)
    assert np.isfinite(loss) and after > max(0.6, before + 0.3), (before, after)
    copy = task.init_model(seed=1)
    copy.load_state_dict(ArrayRecord(model.state_dict()).to_torch_state_dict())
    assert task.evaluate(copy, test)[1] == after
    skewed = task.load_data({"partition-id": 0, "num-partitions": 4}, alpha=0.1)[0]
    labels = skewed.dataset.tensors[1].numpy()
    iid = loaders[0][0].dataset.tensors[1].numpy()
    assert len(np.unique(iid)) == 10 and len(np.unique(labels)) <= 8  # alpha=0.1: digits missing


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_glade_run_reaches_85_percent_in_5_rounds(template_run):
    run = template_run("pytorch")
    centralized = run.metrics("centralized")
    assert sorted(centralized) == list(range(ROUNDS + 1))  # round 0: the initial model
    assert centralized[0]["accuracy"] < 0.3
    assert centralized[ROUNDS]["accuracy"] >= ACCURACY, centralized
    assert sorted(run.metrics("evaluate")) == list(range(1, ROUNDS + 1))
    print(f"pytorch: accuracy {centralized[ROUNDS]['accuracy']:.3f} in {run.seconds:.0f} s")
