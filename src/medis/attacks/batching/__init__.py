"""How the engine batches its replicas: how many share one forward/backward pass, and at what size
the losses are computed.

- :mod:`~medis.attacks.batching.plan`: ``engine.max_batch`` resolved for one same-size batch;
- :mod:`~medis.attacks.batching.memory`: the memory limit, the measured cost of one replica's step;
- :mod:`~medis.attacks.batching.device_probe`: the largest batch a CUDA device runs;
- :mod:`~medis.attacks.batching.loss_size`: losses and step scores at a capped resolution.
"""
