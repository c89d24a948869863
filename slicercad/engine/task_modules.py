"""Which module registers each task (light: ``slicercad train --help`` lists them without torch)."""

# task name -> module that registers it on import (modules add their line here)
TASK_MODULES = {
    "liver_lesion": "slicercad.liver.task",
    "liver_lesion_extended": "slicercad.liver.task",
    "toy2d": "slicercad.engine.tasks",
    "ti_offset": "slicercad.ti.task",
    "ti_offset_open": "slicercad.ti.task",
    "weak_lesion": "slicercad.weak.task",
}
