"""The distributed engine: the same spec, fitted state and outputs as the single-machine job, as a PySpark job."""
