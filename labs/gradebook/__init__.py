"""Instructors: the gradebook, its CSV export, per-lab analytics and grade overrides."""
