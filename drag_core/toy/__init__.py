"""The procedural toy world (coloured shapes on simple backgrounds) and ToyBench's edit cases."""
