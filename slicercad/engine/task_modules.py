"""Which module registers each task (light: ``slicercad train --help`` lists them without torch)."""

# task name -> module that registers it on import (modules add their line here)
TASK_MODULES = {
    "liver_lesion": "slicercad.liver.task",
    "liver_lesion_extended": "slicercad.liver.task",
    "toy2d": "slicercad.engine.tasks",
}
