"""Labelled data for training: task folders read into splits, the built-in demo, the public sets.

``task_folders`` (``DIR/train.*``, ``dev.*``, ``test.*`` → splits; suites of tasks), ``demo`` with
``demo_data/`` (the built-in six-topic × three-sentiment demo) and ``public_sets`` (the benchmark
folders rebuilt from their public sources, checked against recorded checksums).
"""
