"""Linear probes at every layer: ``icl_interp.probe_all_layers`` vs per-layer probes trained with AdamW.

Ours: one cached no-grad forward, then closed-form ridge for every (layer, target), the
penalty chosen by exact leave-one-out from one SVD. The usual way (Akyuerek et al.):
one forward per layer to collect that layer's activations (``run_with_hooks`` capturing
``blocks.{l}.hook_resid_post`` at the query token), then one linear probe per target
trained by full-batch AdamW on standardised features until the training loss stops
improving. Both use the same prompts, the same train/test split (a quarter of the
prompts held out) and the same catalogue targets; held-out R2 must agree within 0.01.

An unpenalised gradient probe does not: it overfits (measured at 2048 prompts: held-out
R2 up to 0.054 below ridge's). So the AdamW probes minimise the same ridge objective,
with the penalty ours chose by leave-one-out handed to them for free: no search is
timed, which favours the usual way (a grid search with validation would multiply its time).
(Not named probes.py: run as a script, benchmarks/ comes first on sys.path and a
benchmarks/probes.py would shadow the ``probes`` target catalogue for every benchmark.)

    .venv/bin/python benchmarks/probing.py [--full]   # 2048 prompts, 8 targets (--full: 8192, every per-prompt target)
    .venv/bin/python benchmarks/probing.py --field    # the Garg-standard model: the report's probing sweeps in forward-equivalents

``--field`` times, in forward-equivalents of the 12 x 8 x 256 model on 128 prompts, ``probe_all_layers`` on the 8 targets
at the query (13 layers) and the report's probing sweep (``studies.preprocessing_study``: 8 targets at the query and the
example targets at every x token, each on the model and on a random control model), with where its time goes
(the forwards, the SVDs of the activations, the leave-one-out penalty choice). Run it with ``PYTHONPATH`` set to an
older checkout to time that one's code on the same model.
"""

import _common as common
import torch

import icl_interp as ii
import probes

TARGETS = ["y_query", "y_query_clean", "w", "r", "pre_reweight", "gd_step_1", "gd_step_2", "ridge_pred"]


def split(n_prompts: int, test_fraction: float = 0.25, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded split of the prompts (the one probe_all_layers documents: a random quarter held out)."""
    n_test = round(n_prompts * test_fraction)
    perm = torch.randperm(n_prompts, generator=torch.Generator().manual_seed(seed))
    return perm[n_test:].sort().values, perm[:n_test].sort().values


def train_probe(
    x: torch.Tensor, y: torch.Tensor, penalty: torch.Tensor, max_steps: int = 3000, tol: float = 1e-5
) -> torch.nn.Linear:
    """Full-batch AdamW on MSE + sum_j penalty_j |W_j|^2 (per input feature j), until 50 steps gain < tol (relative)."""
    probe = torch.nn.Linear(x.shape[1], y.shape[1])
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-2, weight_decay=0.0)
    last = float("inf")
    for step in range(max_steps):
        loss = ((probe(x) - y) ** 2).mean(0).sum() + (penalty * probe.weight**2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 49:
            if last - loss.item() < tol * last:
                break
            last = loss.item()
    return probe


def r2(y: torch.Tensor, pred: torch.Tensor) -> float:
    return float((1 - ((y - pred) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)).mean())


def usual_probes(model, data, targets: list[str], alphas: dict) -> dict[tuple[str, int], float]:
    """Held-out R2 for every (target, layer) the usual way; layer -1 is the residual entering block 0.

    Ridge ``|Y - XB|^2 + alpha |B|^2`` on raw features is, on standardised ones (x_j / sd_j) and
    per-output standardised y, the mean-MSE objective plus ``alpha / (n sd_j^2) |B_j|^2``.
    """
    train, test = split(data.batch_size)
    query = 2 * (data.n_points - 1)
    values = {t: probes.get(t)(data).reshape(data.batch_size, -1) for t in targets}
    resid0 = model.encode(data.xs, data.ys).detach()
    out = {}
    for layer in range(-1, model.hooked.cfg.n_layers):
        name = "blocks.0.hook_resid_pre" if layer < 0 else f"blocks.{layer}.hook_resid_post"
        store = {}

        def grab(act, hook, store=store):
            store["x"] = act[:, query].detach().clone()

        with torch.no_grad():
            model.hooked.run_with_hooks(resid0, start_at_layer=0, fwd_hooks=[(name, grab)])
        x = store["x"]
        mu, sd = x[train].mean(0), x[train].std(0).clamp_min(1e-8)
        x = (x - mu) / sd
        for t in targets:
            y = values[t]
            y_mu, y_sd = y[train].mean(0), y[train].std(0).clamp_min(1e-8)
            penalty = alphas[(t, layer)] / (len(train) * sd**2)
            probe = train_probe(x[train], (y[train] - y_mu) / y_sd, penalty[None, :])
            with torch.no_grad():
                out[(t, layer)] = r2(y[test], probe(x[test]) * y_sd + y_mu)
    return out


FIELD_PROBE_PROMPTS = 128


def field() -> None:
    """The report's probing sweeps on the field's standard model, in forward-equivalents, and where their time goes."""
    import cProfile
    import pstats

    from icl_interp import studies as st
    from icl_interp.tools.runner import prepare

    model = common.field_model()
    data = model.task.sample(FIELD_PROBE_PROMPTS, model.cfg.max_points, seed=3)
    run = prepare(model, data)
    times, _ = common.compare(
        {
            "fwd": common.plain_forward(model, data),
            "query probes": lambda: ii.probe_all_layers(model, run, targets=TARGETS),
            "preprocessing_study": lambda: st.preprocessing_study(model, run),
        },
        1,
        warmup=0,
    )
    fwd = times["fwd"]
    print(f"field: {common.describe(model)}, {FIELD_PROBE_PROMPTS} prompts x {2 * model.cfg.max_points - 1} tokens; "
          f"one forward {fwd.cpu / common.FORWARDS:.3g} s CPU")
    for name in ("query probes", "preprocessing_study"):
        print(f"  {name}: {times[name]} = {common.fwd_eq(times[name], fwd):.1f} fwd-eq")
    prof = cProfile.Profile()
    prof.enable()
    st.preprocessing_study(model, run)
    prof.disable()
    stats = pstats.Stats(prof).stats
    total = sum(v[2] for v in stats.values())

    def cum(fn: str) -> float:  # cumulative time of the functions named fn (ours, or a torch builtin's name)
        return sum(v[3] for (file, _, name), v in stats.items() if name == fn and "icl_interp" in file or name.endswith(fn + ">"))

    parts = {"forwards (runner.prepare: the control model's)": cum("prepare"), "captures (_capture)": cum("_capture"),
             "SVDs (torch.linalg.svd)": cum("linalg_svd"), "leave-one-out (RidgeProbe._loo_mse)": cum("_loo_mse")}
    print("  preprocessing_study under cProfile: " + "; ".join(f"{k} {v / total:.0%}" for k, v in parts.items()))
    print(f"FIELD probing: preprocessing_study {common.fwd_eq(times['preprocessing_study'], fwd):.1f} fwd-eq")


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0])
    common.header("probing")
    if args.field:
        field()
        return
    repeats = args.repeats or 3
    model = common.default_model()
    n_prompts = 8192 if args.full else 2048
    targets = [t.name for t in probes.list_targets() if t.per == "prompt"] if args.full else TARGETS
    data = model.task.sample(n_prompts, 16, seed=3)
    alphas = {(r.target, r.layer): r.probe.alpha_ for r in ii.probe_all_layers(model, data, targets=targets)}
    times, out = common.compare(
        {
            "ours": lambda: ii.probe_all_layers(model, data, targets=targets),
            "usual": lambda: usual_probes(model, data, targets, alphas),
        },
        repeats,
        warmup=0,
    )
    table, usual = out["ours"], out["usual"]
    if not torch.equal(table[0].test_prompts, split(n_prompts)[1]):
        raise common.Disagreement("probe_all_layers used another train/test split than the benchmark's")
    keys = sorted(usual)
    ours_r2 = [table.get(layer, target=t).r2 for t, layer in keys]
    for (t, layer), a in zip(keys, ours_r2):
        print(f"  {t:<14} layer {layer:>2}: R2 ours {a:.4f}  AdamW {usual[(t, layer)]:.4f}")
    common.check_close(f"held-out R2 of {len(keys)} probes", ours_r2, [usual[k] for k in keys], atol=0.01)
    print(
        f"default model, {n_prompts} prompts, {len(targets)} targets x {model.hooked.cfg.n_layers + 1} layers: "
        f"ours {times['ours']}, per-layer AdamW probes {times['usual']}"
    )
    common.ratio("probing", times["usual"], times["ours"], "AdamW")


if __name__ == "__main__":
    main()
