"""labelflow's processing engine: readers, fitted transforms, writers. `preprocess.py` is its entrypoint."""
