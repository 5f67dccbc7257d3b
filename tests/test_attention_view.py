"""Attention views: profiles placed by the token layout (a planted uniform head), figures, the CircuitsVis page."""

import pytest
import torch

import icl_interp as ii

pytestmark = pytest.mark.tl3


def _uniform(model):
    """Zero every query weight and bias: every head attends uniformly to the tokens it may see (a planted pattern)."""
    state = model.own_state_dict()
    for key in state:
        if key.endswith(("attn.W_Q", "attn.b_Q")):
            state[key] = torch.zeros_like(state[key])
    model.load_own_state_dict(state)
    return model


def test_profile_of_uniform_heads_is_one_over_the_visible_tokens(tiny_task):
    model = _uniform(ii.ICLTransformer(ii.ModelConfig(d=4, n_layers=2, n_heads=2, d_model=16, max_points=8), tiny_task))
    data = tiny_task.sample(16, 6, seed=0)
    prof = ii.attention_profile(model, data)
    n_tok = 2 * 6 - 1  # x_1, y_1, ..., x_6: the query x_6 sees all of them
    assert prof.layers == [0, 1] and prof.query == n_tok - 1
    assert torch.allclose(prof.x, torch.full((2, 2, 6), 1 / n_tok), atol=1e-6)
    want_y = torch.full((2, 2, 6), 1 / n_tok)
    want_y[..., -1] = 0  # the last y is never a token
    assert torch.allclose(prof.y, want_y, atol=1e-6)


def test_profile_of_a_trained_model_sums_to_one_and_matches_the_cache(tiny_model, tiny_batch):
    prof = ii.attention_profile(tiny_model, tiny_batch, layer=1)
    assert torch.allclose(prof.x.sum(-1) + prof.y.sum(-1), torch.ones(1, 2), atol=1e-5)
    _, cache = tiny_model.run_with_cache(tiny_batch)
    query_row = cache["blocks.1.attn.hook_pattern"][:, :, -1].mean(0)  # [H, k]
    assert torch.allclose(prof.x[0], query_row[:, 0::2], atol=1e-6)
    assert torch.allclose(prof.y[0, :, :-1], query_row[:, 1::2], atol=1e-6)


def test_concatenated_tokens_have_one_profile(tiny_task):
    model = ii.ICLTransformer(ii.ModelConfig(d=4, n_layers=1, n_heads=2, d_model=16, max_points=8, encoding="concatenated"), tiny_task)
    prof = ii.attention_profile(model, tiny_task.sample(8, 5, seed=1))
    assert prof.y is None and prof.x.shape == (1, 2, 5)
    assert torch.allclose(prof.x.sum(-1), torch.ones(1, 2), atol=1e-5)


@pytest.mark.parametrize("kind", ["examples", "pattern"])
def test_plot_attention_draws_a_panel_per_head_and_layer(tiny_model, tiny_batch, kind):
    fig = ii.plot_attention(tiny_model, tiny_batch, kind=kind, prompt=3)
    assert len([ax for ax in fig.axes if ax.get_title()]) == 4
    with pytest.raises(ValueError, match="kind"):
        ii.plot_attention(tiny_model, tiny_batch, kind="bars")
    with pytest.raises(ValueError, match="prompt"):
        ii.plot_attention(tiny_model, tiny_batch, kind=kind, prompt=99)
    with pytest.raises(ValueError, match="layer"):
        ii.plot_attention(tiny_model, tiny_batch, layer=5)


def test_attention_html_renders_one_prompt(tiny_model, tiny_batch, tmp_path):
    pytest.importorskip("circuitsvis")
    html = ii.tools.attention_view.attention_html(tiny_model, tiny_batch, layer=1, prompt=2, path=tmp_path / "view.html")
    assert (tmp_path / "view.html").read_text() == html and "x0" in html and "y0" in html


def test_an_attached_model_without_layout_is_refused(user_model, tiny_batch):
    with pytest.raises(ValueError, match="layout"):
        ii.attention_profile(user_model, tiny_batch)
