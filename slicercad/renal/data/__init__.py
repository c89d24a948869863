"""Data derived from KiTS23 (MIT licence; see LICENSE-KiTS23.txt and each file's "licence" field)."""
