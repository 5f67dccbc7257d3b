"""Shared fixtures: tiny tasks and models (seconds to build, never a GPU)."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from _util import build_user_hooked  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_task():
    from icl_interp.core.tasks import SparseLinearRegression

    return SparseLinearRegression(d=4, s=2, noise_std=0.1)


@pytest.fixture(scope="session")
def tiny_model(tiny_task):
    """An untrained 2-layer, 2-head interleaved model on d=4."""
    from icl_interp.core.model import ICLTransformer, ModelConfig

    return ICLTransformer(ModelConfig(d=4, n_layers=2, n_heads=2, d_model=16, max_points=8), tiny_task)


@pytest.fixture(scope="session")
def tiny_batch(tiny_task):
    return tiny_task.sample(16, 8, seed=3)


@pytest.fixture(scope="session")
def user_model(tiny_task):
    """A user's own hooked model attached with a float-residual encoding (concatenated [x; y] tokens, query last)."""
    from icl_interp.tools.runner import attach

    hooked = build_user_hooked()
    proj = torch.randn(5, 16, generator=torch.Generator().manual_seed(0))

    def encode(batch):
        ys = batch.ys.clone()
        ys[:, -1] = 0
        return torch.cat([batch.xs, ys.unsqueeze(-1)], -1) @ proj

    return attach(hooked, encode=encode, readout=lambda out: out[:, -1, 0], task=tiny_task)

