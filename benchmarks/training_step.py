"""One training step: ours (``icl_interp.train``'s step) vs a Garg-style Hugging Face GPT-2, at 1 and 2 threads.

Garg et al. train ``transformers.GPT2Model`` on ``inputs_embeds`` with a read-in
``Linear(d, d_model)`` and a read-out ``Linear(d_model, 1)``, building the interleaved
tokens from (xs, ys) inside the forward, as ours does. Both models here are the
default model's size (3 layers x 4 heads, d_model 64, MLP 256, LayerNorm, learned
positions, exact GELU, no dropout) and the GPT-2 is loaded with *our* weights, so the
two are the same function: outputs, read-in gradients and the first step's loss must agree.
Same batch (128 prompts x 16 points, interleaved: 31 tokens) for both.

"ours" is :class:`icl_interp.training.step.TrainStep`, exactly what ``icl_interp.train``
runs: the fused hook-free forward computing only what the loss reads (the last block at
the x tokens), CPU attention as batched matrix products, normalised MSE, backward,
clipping at 1, fused AdamW. "GPT-2" is the usual step: forward, the same loss, backward,
clipping at 1, ``torch.optim.AdamW`` with its defaults. Also timed, for the record:
ours compiled (``TrainConfig(compile=True)``; the compile time is printed), GPT-2 with
fused AdamW and with HF's eager attention, ``ours_full`` (``model(xs, ys, fast=True)``
over every position with default AdamW: the previous training step, with this
version's CPU attention) and ``bridge`` (our step through the TransformerLens bridge's
hooked forward). Each variant is timed interleaved at 1 and at 2 torch threads (ratios:
CPU time at 1 thread, wall time at 2 threads), then both steps are profiled
(torch.profiler) and the top cost centres printed.

    .venv/bin/python benchmarks/training_step.py [--full]   # 30 steps each (--full: 100, batch 256)
"""

import json
import time

import _common as common
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from transformers import GPT2Config, GPT2Model

import icl_interp as ii
from icl_interp.core import fast_paths as _fast
from icl_interp.core.checkpoint import read_config, zoo_folder
from icl_interp.training.distributed import Dist
from icl_interp.training.step import TrainStep, make_optimizer

#: the model timed, and whose shipped log gives the steps to quality: the 3-layer v2 default, the size the figures in
#: benchmarks/README.md were taken at
TIMED = "default-v2"


class GargGPT2(nn.Module):
    """Garg et al.'s model: read-in, GPT-2 backbone on inputs_embeds, read-out at the x tokens."""

    def __init__(self, d: int, d_model: int, n_layers: int, n_heads: int, n_ctx: int):
        super().__init__()
        cfg = GPT2Config(
            n_positions=n_ctx, n_embd=d_model, n_layer=n_layers, n_head=n_heads, resid_pdrop=0.0, embd_pdrop=0.0,
            attn_pdrop=0.0, use_cache=False, activation_function="gelu", vocab_size=1, bos_token_id=0, eos_token_id=0,
        )  # fmt: skip
        self.read_in = nn.Linear(d, d_model)
        self.backbone = GPT2Model(cfg)
        self.read_out = nn.Linear(d_model, 1)

    @staticmethod
    def combine(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """x_1, y_1, ..., x_n with y zero-padded to d, built in the forward as Garg et al. do (the last y dropped)."""
        b, n, d = xs.shape
        ys_wide = torch.cat([ys[..., None], xs.new_zeros(b, n, d - 1)], -1)
        return torch.stack([xs, ys_wide], 2).reshape(b, 2 * n, d)[:, :-1]

    def forward(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(inputs_embeds=self.read_in(self.combine(xs, ys))).last_hidden_state
        return self.read_out(hidden)[:, 0::2, 0]


def copy_weights(ours: ii.ICLTransformer, hf: GargGPT2) -> None:
    """Load our weights into the GPT-2 (Conv1D weights are [in, out]; q, k, v are concatenated)."""
    sd, L = ours.hooked.state_dict(), ours.cfg.n_layers
    new = {
        "read_in.weight": ours.read_in.weight, "read_in.bias": ours.read_in.bias, "backbone.wpe.weight": ours.pos_emb,
        "backbone.ln_f.weight": sd["ln_final.weight"], "backbone.ln_f.bias": sd["ln_final.bias"],
        "read_out.weight": sd["unembed.weight"], "read_out.bias": sd["unembed.bias"],
    }  # fmt: skip
    for l in range(L):
        b, h = f"blocks.{l}.", f"backbone.h.{l}."
        qkv = [sd[b + f"attn.{p}.weight"] for p in "qkv"]
        new.update({
            h + "ln_1.weight": sd[b + "ln1.weight"], h + "ln_1.bias": sd[b + "ln1.bias"],
            h + "ln_2.weight": sd[b + "ln2.weight"], h + "ln_2.bias": sd[b + "ln2.bias"],
            h + "attn.c_attn.weight": torch.cat(qkv).T, h + "attn.c_attn.bias": torch.cat([sd[b + f"attn.{p}.bias"] for p in "qkv"]),
            h + "attn.c_proj.weight": sd[b + "attn.o.weight"].T, h + "attn.c_proj.bias": sd[b + "attn.o.bias"],
            h + "mlp.c_fc.weight": sd[b + "mlp.in.weight"].T, h + "mlp.c_fc.bias": sd[b + "mlp.in.bias"],
            h + "mlp.c_proj.weight": sd[b + "mlp.out.weight"].T, h + "mlp.c_proj.bias": sd[b + "mlp.out.bias"],
        })  # fmt: skip
    missing, _ = hf.load_state_dict({k: v.detach().clone() for k, v in new.items()}, strict=False)
    if [k for k in missing if k != "backbone.wte.weight"]:
        raise common.Disagreement(f"GPT-2 weights not set from ours: {missing}")


def bridge_forward(model: ii.ICLTransformer, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Our model through the TransformerLens bridge's own forward (hook points, bridge wrappers)."""
    return model.readout(model.hooked(model.encode(xs, ys), start_at_layer=0))


def make_step(model: nn.Module, forward, data, norm: float, fused_adam: bool = False):
    """The usual optimizer step (forward, normalised MSE, backward, clip at 1, AdamW); returns the loss."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, fused=fused_adam or None)

    def step() -> float:
        loss = ((forward() - data.ys) ** 2).mean() / norm
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    return step


def our_step(model: ii.ICLTransformer, data, norm: float, compile: bool = False):
    """``icl_interp.train``'s own step (TrainStep), at a constant learning rate."""
    cfg = ii.TrainConfig(lr=1e-3, grad_clip=1.0, compile=compile)
    device = torch.device("cpu")
    step = TrainStep(model, make_optimizer(model, cfg, device), cfg, norm, device, Dist())
    return lambda: step(data, 1e-3, 0).item()


def time_to_quality(times: dict, batch_size: int, compile_seconds: float) -> str:
    """Minutes to the shipped v2 default's quality at the measured step times (the same function: the same steps).

    The steps: the first logged evaluation within 2% of the run's final error (the
    decay phase of its schedule). The step times are per step at ``batch_size``.
    """
    log = json.loads((zoo_folder(TIMED) / "training_log.json").read_text())
    recipe = read_config(TIMED)["training"]["train_config"]
    evals = [e for e in log if "eval_error_last" in e]
    final = evals[-1]["eval_error_last"]
    steps = next(e["step"] for e in evals if e["eval_error_last"] <= 1.02 * final)
    minutes = {name: steps * times[name] / 60 for name in ("ours", "ours_compiled", "hf")}
    minutes["ours_compiled"] += compile_seconds / 60
    note = "" if batch_size == recipe["batch_size"] else f" (steps timed at batch {batch_size}; the recipe's is {recipe['batch_size']}: --full)"
    return (f"time to quality: the v2 default's log is within 2% of its final error ({final:.4f}) from step {steps:,}; "
            f"at this step time ours {minutes['ours']:.1f} min, compiled {minutes['ours_compiled']:.1f} min (with its compile), "
            f"GPT-2 {minutes['hf']:.1f} min{note}")


def top_ops(prof, n: int) -> str:
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in rows)
    return "\n".join(f"    {e.key:<42} {100 * e.self_cpu_time_total / total:5.1f}%  {e.count:>5} calls" for e in rows[:n])


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0])
    common.header("training_step")
    steps = args.repeats or (100 if args.full else 30)
    batch_size = 256 if args.full else 128
    ours = ii.preset_model(TIMED)
    task, cfg = ours.task, ours.cfg
    hf = GargGPT2(cfg.d, cfg.d_model, cfg.n_layers, cfg.n_heads, ours.cfg.n_ctx)
    copy_weights(ours, hf)
    ours.train()
    hf.train()
    data = task.sample(batch_size, cfg.max_points, seed=0)
    common.check_close("token encodings", GargGPT2.combine(data.xs, data.ys), ours.tokens(data.xs, data.ys), atol=0)
    with torch.no_grad():
        common.check_close("forward outputs (same weights)", ours(data.xs, data.ys), hf(data.xs, data.ys), atol=1e-4)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_hf = sum(p.numel() for n, p in hf.named_parameters() if n != "backbone.wte.weight")
    print(
        f"parameters: ours {n_ours}, GPT-2 {n_hf} (its unused token embedding not counted); attention: {hf.backbone.config._attn_implementation}"
    )
    for out in (ours(data.xs, data.ys), hf(data.xs, data.ys)):  # the backward reaches the read-in through every layer
        (((out - data.ys) ** 2).mean() / task.norm).backward()
    common.check_close("read-in gradients", ours.read_in.weight.grad, hf.read_in.weight.grad, atol=1e-5, rtol=1e-3)
    ours.zero_grad(set_to_none=True)
    with torch.no_grad():
        resid = ours.encode(data.xs, data.ys)
        fused = _fast.fused_forward(ours.hooked, resid)
        if fused is None:
            raise common.Disagreement("the fused training forward is not available for this model")
        common.check_close("fused forward vs bridge forward", ours.readout(fused), bridge_forward(ours, data.xs, data.ys), atol=1e-5)
        read = _fast.fused_forward(ours.hooked, resid, read=slice(0, None, 2))[..., 0]
        common.check_close("last block at the x tokens only vs bridge forward", read, bridge_forward(ours, data.xs, data.ys), atol=1e-5)
    step_ours = our_step(ours, data, task.norm)
    step_hf = make_step(hf, lambda: hf(data.xs, data.ys), data, task.norm)
    common.check_close("loss of the first step", step_ours(), step_hf(), atol=1e-5)
    hf_eager = GargGPT2(cfg.d, cfg.d_model, cfg.n_layers, cfg.n_heads, ours.cfg.n_ctx)
    hf_eager.backbone.config._attn_implementation = "eager"
    hf_eager.load_state_dict(hf.state_dict())
    hf_eager.train()
    compiled = ii.preset_model(TIMED)
    compiled.load_own_state_dict(ours.own_state_dict())
    compiled.train()
    step_compiled = our_step(compiled, data, task.norm, compile=True)
    start = time.perf_counter()
    common.check_close("loss of the first step, compiled", step_compiled(), step_ours(), atol=1e-5)
    compile_seconds = time.perf_counter() - start
    print(f"compiling the step (TrainConfig(compile=True)) took {compile_seconds:.0f} s")
    fns = {
        "ours": step_ours,
        "ours_compiled": step_compiled,
        "hf": step_hf,
        "hf_fused_adam": make_step(hf, lambda: hf(data.xs, data.ys), data, task.norm, fused_adam=True),
        "hf_eager": make_step(hf_eager, lambda: hf_eager(data.xs, data.ys), data, task.norm),
        "ours_full": make_step(ours, lambda: ours(data.xs, data.ys, fast=True), data, task.norm),
        "bridge": make_step(ours, lambda: bridge_forward(ours, data.xs, data.ys), data, task.norm),
    }
    ratios = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        times, _ = common.compare(fns, steps, warmup=2)
        pick = (lambda t: t.cpu) if threads == 1 else (lambda t: t.wall)
        what = "CPU time" if threads == 1 else "wall time"
        ratios[threads] = pick(times["hf"]) / pick(times["ours"])
        ratios["compiled", threads] = pick(times["hf"]) / pick(times["ours_compiled"])
        print(f"{threads} thread(s), {batch_size} prompts x 31 tokens, median of {steps} steps, per step ({what} for the ratios):")
        for name, t in times.items():
            print(f"  {name:<14} {t}   GPT-2 / this {pick(times['hf']) / pick(t):.2f}x")
        print("  " + time_to_quality({k: pick(t) for k, t in times.items()}, batch_size, compile_seconds))
    torch.set_num_threads(1)

    for name, step in (("ours", step_ours), ("GPT-2", step_hf)):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                step()
        n_ops = sum(e.count for e in prof.key_averages() if e.key.startswith("aten::")) / 5
        print(f"  {name}: top cost centres over 5 steps (self CPU time, 1 thread), {n_ops:.0f} aten ops per step\n{top_ops(prof, 12)}")
    print(f"RATIO training_step {ratios[1]:.2f}x at 1 thread (CPU time), {ratios[2]:.2f}x at 2 threads (wall time); GPT-2 / ours "
          f"(compiled: {ratios['compiled', 1]:.2f}x, {ratios['compiled', 2]:.2f}x)")


if __name__ == "__main__":
    main()
