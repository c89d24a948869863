"""The engine's training settings a task's recipe may change (light: ``slicercad train --help`` needs no torch)."""

# values used where neither the caller nor the task's recipe (``TaskSpec.recipe``) sets one
TRAIN_DEFAULTS = {"epochs": 20, "batch_size": 32, "lr": 1e-3, "weight_decay": 0.0, "patience": 5,
                  "val_fraction": 0.2}
