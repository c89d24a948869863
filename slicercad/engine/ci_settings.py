"""The evaluation's defined quantities (light: command-line help shows them without torch)."""

CI_LEVEL = 0.95                   # two-sided percentile bootstrap interval
N_BOOT = 1000                     # bootstrap resamples
SIZE_BIN_EDGES_MM = (10.0, 20.0)  # <10 mm, 10–20 mm, ≥20 mm (the seed report's Table 1); a bin holds its lower edge
MIN_BOOT = 10                     # fewer finite resamples than this give no CI
