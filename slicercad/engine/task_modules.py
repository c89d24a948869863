"""Which module registers each task (light: ``slicercad train --help`` lists them without torch)."""

# task name -> module that registers it on import (modules add their line here)
TASK_MODULES = {
    "liver_lesion": "slicercad.liver.task",
    "liver_lesion_extended": "slicercad.liver.task",
    "toy2d": "slicercad.engine.tasks",
    "ti_offset": "slicercad.ti.task",
    "ti_offset_open": "slicercad.ti.task",
    "weak_lesion": "slicercad.weak.task",
    "anomaly_glow_head3d": "slicercad.anomaly.task",
    "anomaly_glow_cxr2d": "slicercad.anomaly.task",
    "anomaly_gan_head3d": "slicercad.anomaly.task",
    "anomaly_gan_cxr2d": "slicercad.anomaly.task",
    "renal_mass_phase": "slicercad.renal.task",
    "renal_mass_multiphase": "slicercad.renal.task",
    "renal_mass_bundle": "slicercad.renal.task",
}
