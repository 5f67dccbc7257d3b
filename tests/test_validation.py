"""Table-driven: bad calls across the public API raise ValueError/TypeError naming the argument."""

import pytest
import torch

import icl_interp as ii
from icl_interp.core.tasks import ICLBatch

pytestmark = pytest.mark.tl3

NAN = float("nan")


def _batch(b=8, n=8, d=4, seed=0):
    return ii.SparseLinearRegression(d=d, s=2, noise_std=0.1).sample(b, n, seed=seed)


def _nan_batch():
    good = _batch()
    xs = good.xs.clone()
    xs[0, 0, 0] = NAN
    return (xs, good.ys, good.w)


CASES = [
    # (id, callable taking the tiny model, exception, text the message must contain)
    ("task s > d", lambda m: ii.SparseLinearRegression(d=3, s=4), ValueError, "s"),
    ("task negative noise", lambda m: ii.LinearRegression(d=3, noise_std=-1.0), ValueError, "noise_std"),
    ("task d zero", lambda m: ii.LinearRegression(d=0), ValueError, "d"),
    ("task d float", lambda m: ii.LinearRegression(d=2.5), TypeError, "d"),
    ("sample empty batch", lambda m: _batch(b=0), ValueError, "batch_size"),
    ("sample n_points zero", lambda m: _batch(n=0), ValueError, "n_points"),
    ("sample active dims too big", lambda m: ii.LinearRegression(d=3).sample(2, 2, active_dims=4), ValueError, "active_dims"),
    ("task x_cov not PD", lambda m: ii.LinearRegression(d=2, x_cov=[[1, 2], [2, 1]]), ValueError, "x_cov"),
    ("batch with NaN", lambda m: ICLBatch(*_nan_batch()), ValueError, "xs"),
    ("batch ys shape", lambda m: ICLBatch(torch.zeros(2, 3, 4), torch.zeros(2, 4), torch.zeros(2, 4)), ValueError, "ys"),
    ("forward wrong d", lambda m: m(torch.zeros(2, 3, 5), torch.zeros(2, 3)), ValueError, "d=5"),
    ("forward too many points", lambda m: m(_batch(n=9)), ValueError, "max_points"),
    ("forward not a tensor", lambda m: m([[1.0]], [[1.0]]), TypeError, "xs"),
    ("mask wrong shape", lambda m: ii.mask_heads(m, _batch(), torch.ones(2, 3)), ValueError, "mask"),
    ("mask out of range", lambda m: ii.mask_heads(m, _batch(), -torch.ones(2, 2)), ValueError, "mask"),
    ("mask_heads data not a batch", lambda m: ii.mask_heads(m, torch.zeros(2, 8, 4), torch.ones(2, 2)), TypeError, "data"),
    ("mask_heads unknown ablation", lambda m: ii.mask_heads(m, _batch(), torch.ones(2, 2), ablation="gauss"), ValueError, "ablation"),
    ("importance unknown method", lambda m: ii.head_importance(m, _batch(), method="shap"), ValueError, "method"),
    ("importance wrong d", lambda m: ii.head_importance(m, _batch(d=5)), ValueError, "d=5"),
    ("prune bad keep", lambda m: ii.prune_heads(torch.rand(2, 2), keep=3), ValueError, "keep"),
    ("prune importance NaN", lambda m: ii.prune_heads(torch.full((2, 2), NAN), keep=1), ValueError, "importance"),
    ("patch unknown site", lambda m: ii.patch_activations(m, _batch(), _batch(seed=1), site="logits"), ValueError, "site"),
    ("patch shape mismatch", lambda m: ii.patch_activations(m, _batch(), _batch(n=7)), ValueError, "same shape"),
    ("patch bad layer", lambda m: ii.patch_activations(m, _batch(), _batch(seed=1), layers=[2]), ValueError, "layers"),
    ("patched head out of range", lambda m: ii.patched(m, {}, "head", (0, 5)).__enter__(), ValueError, "head"),
    ("load_model unknown", lambda m: ii.load_model("nope"), ValueError, "path_or_name"),
    ("train wrong task d", lambda m: ii.train(m, ii.LinearRegression(d=5), ii.TrainConfig(steps=1, progress=False)), ValueError, "d"),
    ("train config bad schedule", lambda m: ii.TrainConfig(schedule="step"), ValueError, "schedule"),
    ("model config bad normalization", lambda m: ii.ModelConfig(normalization="batch"), ValueError, "normalization"),
    ("lasso negative alpha", lambda m: ii.baselines.Lasso(alpha=-1.0), ValueError, "alpha"),
    ("ridge fit wrong rank", lambda m: ii.baselines.Ridge(alpha=1.0).fit(torch.zeros(3, 4), torch.zeros(3)), ValueError, "xs"),
    ("ols fit NaN", lambda m: ii.baselines.OLS().fit(*_nan_batch()[:2]), ValueError, "xs"),
    ("gd negative steps", lambda m: ii.baselines.GD(steps=-1, lr=0.1), ValueError, "steps"),
    ("predict wrong d", lambda m: ii.baselines.OLS().fit(_batch().xs, _batch().ys).predict(torch.zeros(8, 5)), ValueError, "x"),
    ("evaluate zero prompts", lambda m: ii.evaluate(ii.baselines.OLS(), ii.LinearRegression(d=3), n_points=4, n_prompts=0), ValueError, "n_prompts"),
    ("evaluate model on wrong task d", lambda m: ii.evaluate(m, ii.LinearRegression(d=5), n_points=4, n_prompts=8), ValueError, "d=5"),
    ("probe unknown target", lambda m: ii.probe_layer(m, _batch(), 0, "no_such_target"), ValueError, "y_query"),
    ("probe layer out of range", lambda m: ii.probe_layer(m, _batch(), 7, "y_query"), ValueError, "layer"),
    ("probe bad site", lambda m: ii.probe_layer(m, _batch(), 0, "y_query", site="logits"), ValueError, "site"),
    ("probe data too small", lambda m: ii.probe_layer(m, _batch(b=3), 0, "y_query"), ValueError, "data"),
    ("probe_all_layers empty targets", lambda m: ii.probe_all_layers(m, _batch(), targets=[]), ValueError, "targets"),
    ("gd_alignment bad steps", lambda m: ii.gd_alignment(m, _batch(b=16), steps=[0]), ValueError, "steps"),
    ("gd_alignment bad preprocessing", lambda m: ii.gd_alignment(m, _batch(b=16), preprocessing="sqrt"), ValueError, "preprocessing"),
    ("attach bare module", lambda m: ii.attach(torch.nn.Linear(1, 1), encode=lambda b: b, readout=lambda o: o), TypeError, "hooked"),
    # the batch boundary: dtypes and devices (a floating batch of another dtype is cast; another device is refused)
    ("batch int xs", lambda m: ICLBatch(torch.zeros(2, 3, 4, dtype=torch.long), torch.zeros(2, 3), torch.zeros(2, 4)), TypeError, "xs"),
    ("batch mixed dtypes", lambda m: ICLBatch(torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, 4)), TypeError, "ys"),
    ("batch mixed devices", lambda m: ICLBatch(torch.zeros(2, 3, 4), torch.zeros(2, 3, device="meta"), torch.zeros(2, 4)), ValueError, "ys"),
    ("batch to int dtype", lambda m: _batch().to(dtype=torch.int32), TypeError, "dtype"),
    ("forward batch on meta", lambda m: m(_batch().to("meta")), ValueError, "meta"),
    ("mask_heads batch on meta", lambda m: ii.mask_heads(m, _batch().to("meta"), torch.ones(2, 2)), ValueError, "data"),
    ("importance batch on meta", lambda m: ii.head_importance(m, _batch().to("meta")), ValueError, "cpu"),
    ("probe batch on meta", lambda m: ii.probe_layer(m, _batch().to("meta"), 0, "y_query"), ValueError, "data"),
    ("patch corrupted on meta", lambda m: ii.patch_activations(m, _batch(), _batch(seed=1).to("meta")), ValueError, "corrupted"),
    ("patch clean run of another model", lambda m: ii.patch_activations(m, ii.prepare(_other(), _batch()), _batch(seed=1)), ValueError, "clean"),
    ("probe layer as a string", lambda m: ii.probe_layer(m, _batch(), "1", "y_query"), ValueError, "int"),
    ("probe layer as a bool", lambda m: ii.probe_layer(m, _batch(), True, "y_query"), TypeError, "layer"),
    ("prepare a tensor", lambda m: ii.prepare(m, torch.zeros(2, 3, 4)), TypeError, "data"),
    ("check_model bare hooked", lambda m: ii.tools.runner.check_model(m.hooked), TypeError, "attach"),
    # degenerate patching and index ranges, checked before any forward
    ("patch identical prompts", lambda m: ii.patch_activations(m, _batch(), _batch()), ValueError, "same error"),
    ("patched pos out of range", lambda m: ii.patched(m, _cache(m), "resid_pre", (0, 100)).__enter__(), ValueError, "index[1] (pos)"),
    ("patched pos negative", lambda m: ii.patched(m, _cache(m), "resid_post", (1, -1)).__enter__(), ValueError, "index[1] (pos)"),
    ("patched head_pos pos out of range", lambda m: ii.patched(m, _cache(m), "head_pos", (0, 1, 15)).__enter__(), ValueError, "index[2] (pos)"),
    ("patched layer out of range", lambda m: ii.patched(m, _cache(m), "resid_mid", (2, 0)).__enter__(), ValueError, "index[0] (layer)"),
    ("patched index a bool", lambda m: ii.patched(m, _cache(m), "resid_pre", True).__enter__(), TypeError, "index"),
    # the encode / readout contracts of attach, checked on first use
    ("readout [B, pos, 1]", lambda m: ii.mask_heads(_attached(m, readout=lambda o: o), _batch(), torch.ones(2, 2)), ValueError, "readout"),
    ("readout a list", lambda m: ii.mask_heads(_attached(m, readout=lambda o: list(o[:, 0::2, 0])), _batch(), torch.ones(2, 2)), TypeError, "readout"),
    ("readout [B, n + 1]", lambda m: ii.head_importance(_attached(m, readout=lambda o: o[:, :9, 0]), _batch()), ValueError, "readout"),
    ("readout integer", lambda m: ii.mask_heads(_attached(m, readout=lambda o: o[:, 0::2, 0].long()), _batch(), torch.ones(2, 2)), TypeError, "readout"),
    ("readout NaN", lambda m: ii.mask_heads(_attached(m, readout=lambda o: o[:, 0::2, 0] * NAN), _batch(), torch.ones(2, 2)), ValueError, "readout"),
    ("encode a list", lambda m: ii.mask_heads(_attached(m, encode=lambda b: [b.xs]), _batch(), torch.ones(2, 2)), TypeError, "encode"),
    ("encode wrong width", lambda m: ii.mask_heads(_attached(m, encode=lambda b: torch.zeros(8, 15, 3)), _batch(), torch.ones(2, 2)), ValueError, "encode"),
    ("encode NaN", lambda m: ii.probe_layer(_attached(m, encode=lambda b: m.encode(b.xs, b.ys) * NAN), _batch(), 0, "y_query"), ValueError, "encode"),
    ("encode on meta", lambda m: ii.mask_heads(_attached(m, encode=lambda b: m.encode(b.xs, b.ys).to("meta")), _batch(), torch.ones(2, 2)), ValueError, "encode"),
    ("encode bool tokens", lambda m: ii.mask_heads(_attached(m, encode=lambda b: b.xs[..., 0] > 0), _batch(), torch.ones(2, 2)), ValueError, "encode"),
    ("attach layout not callable", lambda m: ii.attach(m.hooked, encode=lambda b: b, readout=lambda o: o, layout=3), TypeError, "layout"),
    ("train config fast not bool", lambda m: ii.TrainConfig(fast="yes"), TypeError, "fast"),
]


def _other():
    return ii.ICLTransformer(ii.ModelConfig(d=4, n_layers=2, n_heads=2, d_model=16, max_points=8, seed=5))


def _cache(m):
    return m.run_with_cache(_batch())[1]


def _attached(m, encode=None, readout=None):
    """The tiny model's core attached by a user, with one of encode / readout replaced."""
    return ii.attach(m.hooked, encode=encode or (lambda b: m.encode(b.xs, b.ys)), readout=readout or (lambda o: o[:, 0::2, 0]))


@pytest.mark.parametrize("call, exc, text", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_call_raises_clear_error(tiny_model, call, exc, text):
    with pytest.raises(exc) as info:
        call(tiny_model)
    assert text in str(info.value)


def test_cli_prints_error_without_traceback(tmp_path, capsys):
    from icl_interp.cli import main

    assert main(["train", "--preset", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "preset" in err and "Traceback" not in err
    assert main(["evaluate", "no-such-model"]) == 2
    assert "path_or_name" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_a_batch_of_another_float_dtype_is_cast_to_the_models(tiny_model, dtype):
    """The documented policy: same predictions as float32 within 1e-3, in the model, every tool, probes."""
    batch = _batch(b=32)
    other = batch.to(dtype=dtype)
    tol = 1e-3 if dtype == torch.float64 else 3e-2  # float16/bfloat16 inputs are rounded before the cast
    assert torch.allclose(tiny_model(other), tiny_model(batch), atol=tol)
    assert torch.allclose(ii.head_importance(tiny_model, other), ii.head_importance(tiny_model, batch), atol=tol)
    assert abs(ii.probe_layer(tiny_model, other, 0, "y_query").r2 - ii.probe_layer(tiny_model, batch, 0, "y_query").r2) < 10 * tol
    attached = _attached(tiny_model, encode=lambda b: tiny_model.encode(b.xs.float(), b.ys.float()).double())
    assert torch.allclose(ii.mask_heads(attached, batch, torch.ones(2, 2)), tiny_model(batch), atol=1e-5)
