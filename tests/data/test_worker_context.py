"""DataLoader workers start inside a joblib/loky job (Hydra's joblib launcher) with default settings."""

from __future__ import annotations

import torch
from joblib import Parallel, delayed
from torch.utils.data import DataLoader, TensorDataset

from medis.data.worker_context import worker_context


def load_in_job(num_workers: int) -> float:
    data = TensorDataset(torch.arange(8.0))
    loader = DataLoader(data, batch_size=4, num_workers=num_workers,
                        multiprocessing_context=worker_context(num_workers))
    return float(sum(batch[0].sum() for batch in loader))


def test_workers_start_inside_loky_jobs() -> None:
    assert Parallel(n_jobs=2, backend="loky")(delayed(load_in_job)(n) for n in (2, 0)) == [28.0, 28.0]


def test_default_context_outside_loky() -> None:
    assert worker_context(2) is None and worker_context(0) is None
