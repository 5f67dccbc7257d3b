import pytest
import torch
from _util import build_user_hooked

import icl_interp
from icl_interp.core.backend import tl_major
from icl_interp.core.protocol import as_model
from icl_interp.tools.masking import mask_heads
from icl_interp.tools.runner import attach, predict, residual_input

pytestmark = pytest.mark.tl3


@pytest.fixture(scope="module")
def token_model(tiny_task):
    """A user's model fed integer tokens: the sign pattern of each x, one token per example."""
    hooked = build_user_hooked(d_vocab=16, n_ctx=16, seed=3)
    weights = 2 ** torch.arange(4)

    def encode(batch):
        return ((batch.xs > 0).long() * weights).sum(-1)  # [B, n] tokens in [0, 16)

    def readout(out, batch):  # two-argument read-out: may use the batch
        return out[:, :, 0] * batch.ys.std()

    return attach(hooked, encode=encode, readout=readout, task=tiny_task)


def test_token_model_runs_through_the_tools(token_model, tiny_batch):
    plain = token_model(tiny_batch)
    assert plain.shape == (16, 8)
    assert torch.allclose(predict(token_model, tiny_batch), plain, atol=1e-5)
    resid = residual_input(token_model, tiny_batch)
    assert resid.shape == (16, 8, 16) and resid.is_floating_point()
    masked_out = mask_heads(token_model, tiny_batch, torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    assert not torch.allclose(masked_out, plain, atol=1e-4)
    imp = icl_interp.head_importance(token_model, tiny_batch)
    assert imp.shape == (2, 2) and torch.isfinite(imp).all()


def test_attach_validates(tiny_model):
    with pytest.raises(TypeError, match="hooked"):
        attach(torch.nn.Linear(2, 2), encode=lambda b: b.xs, readout=lambda o: o)
    with pytest.raises(TypeError, match="encode"):
        attach(tiny_model.hooked, encode=3, readout=lambda o: o)
    with pytest.raises(TypeError, match="readout"):
        attach(tiny_model.hooked, encode=lambda b: b.xs, readout=None)
    with pytest.raises(TypeError, match="attach"):
        as_model(tiny_model.hooked)


def test_float_encoding_must_match_d_model(tiny_model, tiny_batch):
    bad = attach(tiny_model.hooked, encode=lambda b: torch.zeros(b.batch_size, 3, 7), readout=lambda o: o[:, -1, 0])
    with pytest.raises(ValueError, match="encode"):
        mask_heads(bad, tiny_batch, torch.ones(2, 2))


def test_attaching_the_core_of_an_icl_transformer_reproduces_it(tiny_model, tiny_batch):
    same = attach(tiny_model.hooked, encode=lambda b: tiny_model.encode(b.xs, b.ys), readout=lambda o: o[:, 0::2, 0],
                  task=tiny_model.task)
    assert torch.allclose(same(tiny_batch), tiny_model(tiny_batch), atol=1e-6)
    assert torch.allclose(icl_interp.head_importance(same, tiny_batch), icl_interp.head_importance(tiny_model, tiny_batch), atol=1e-6)


def test_user_hook_on_resid_pre_fires_once_for_token_models(token_model, tiny_batch):
    icl_interp.tools.runner.check_model(token_model, tiny_batch)  # the once-per-model self-check runs the model twice itself
    calls = []

    def count(x, hook):
        calls.append(1)
        return x + 1.0

    with token_model.hooked.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", count)]):
        want = token_model(tiny_batch)
        calls.clear()
        got = predict(token_model, tiny_batch)
    # its effect applies once (got == want below); on 4.x TL's stop_at_layer also calls it while embedding
    assert len(calls) == (2 if tl_major() >= 4 else 1)
    assert torch.allclose(got, want, atol=1e-5)
