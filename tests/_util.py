"""Test helpers shared by several test files."""


def build_user_hooked(n_layers=2, n_heads=2, d_model=16, n_ctx=32, d_vocab=1, seed=0):
    """A hooked model built the way a user would: HookedTransformer on TL 3.x, boot_native on TL 4.x."""
    from icl_interp.core.backend import tl_major

    kwargs = dict(d_model=d_model, d_head=d_model // n_heads, n_layers=n_layers, n_heads=n_heads, n_ctx=n_ctx,
                  d_vocab=d_vocab, d_vocab_out=1, act_fn="gelu", normalization_type="LN", seed=seed)
    if tl_major() >= 4:
        from transformer_lens.config import TransformerBridgeConfig
        from transformer_lens.model_bridge import TransformerBridge

        return TransformerBridge.boot_native(TransformerBridgeConfig(**kwargs)).eval()
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    return HookedTransformer(HookedTransformerConfig(**kwargs)).eval()


def hook_counts(hooked):
    """Number of torch and TransformerLens hooks on every hook point (to check that none leak)."""
    return {name: (len(hp._forward_hooks), len(getattr(hp, "fwd_hooks", []))) for name, hp in hooked.hook_dict.items()}
