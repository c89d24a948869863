"""Cardiac LGE inversion-time correction from a TI-scout series (seed 002).

Light at package level: nothing here imports torch. ``constants`` holds every quantity the
method defines (bin edges, optimal range, rule constants); ``scout`` loads a TI scout from
DICOM or images; ``physics`` fits the inversion-recovery curve; ``phantom`` and ``capture``
make SYNTHETIC scouts and monitor photos; ``model``/``task``/``correct`` hold the CNN and the
fusion (torch, imported on use); ``evaluate`` reproduces the report's table on the phantom.
"""
