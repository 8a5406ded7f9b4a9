"""How a run of ``attack.py`` or ``train.py`` starts and holds its folder: the command line
(:mod:`~medis.runtime.cli`), the run-folder guard and lock, the run's info file, the CPU allocator
policy, byte sizes."""
