"""SYNTHETIC data for tests and demos (no patient data): ``study`` writes multi-phase abdominal
MRI/CT studies from the analytic phantom in ``anatomy``; ``liver_lesions*`` renders EOB-MRI
lesion patches. Import the sub-modules directly."""
