"""tiny-sd's networks: a CLIP-like text encoder, a conditional UNet and a small KL autoencoder.

They follow the shapes of Stable Diffusion's components (GroupNorm, SiLU, ResNet blocks with a
timestep embedding, transformer blocks with self- and cross-attention) at a size that trains on
two CPU cores. Nothing here mixes samples within a batch (no BatchNorm), so every sample's
output depends only on its own inputs, including its own timestep.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        self.heads = heads
        ctx = context_dim or dim
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(ctx, dim, bias=False)
        self.to_v = nn.Linear(ctx, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x, context=None, mask=None):
        context = x if context is None else context
        b, n, d = x.shape
        h = self.heads
        q = (self.to_q(x) * (d // h) ** -0.5).reshape(b, n, h, d // h).transpose(1, 2)
        k = self.to_k(context).reshape(b, context.shape[1], h, d // h).transpose(1, 2)
        v = self.to_v(context).reshape(b, context.shape[1], h, d // h).transpose(1, 2)
        scores = q @ k.transpose(-1, -2)
        if mask is not None:
            scores = scores + mask
        out = scores.softmax(-1) @ v
        return self.to_out(out.transpose(1, 2).reshape(b, n, d))


class TextEncoder(nn.Module):
    """CLIP text transformer: causal, pre-LayerNorm, pooled at the EOS (highest id) token."""

    def __init__(self, vocab_size: int, dim: int, layers: int, heads: int, max_length: int):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.position_embedding = nn.Parameter(torch.randn(max_length, dim) * 0.01)
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            self.blocks.append(nn.ModuleDict({
                "ln1": nn.LayerNorm(dim), "attn": Attention(dim, heads),
                "ln2": nn.LayerNorm(dim), "mlp": nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)),
            }))
        self.final_layer_norm = nn.LayerNorm(dim)
        causal = torch.full((max_length, max_length), float("-inf")).triu(1)
        self.register_buffer("causal_mask", causal, persistent=False)

    def forward(self, input_ids):
        ids = input_ids.long()
        n = ids.shape[1]
        x = self.token_embedding(ids) + self.position_embedding[:n]
        mask = self.causal_mask[:n, :n]
        for blk in self.blocks:
            x = x + blk["attn"](blk["ln1"](x), mask=mask)
            x = x + blk["mlp"](blk["ln2"](x))
        hidden = self.final_layer_norm(x)
        eos = ids.argmax(-1)
        pooled = hidden.gather(1, eos[:, None, None].expand(-1, 1, hidden.shape[2])).squeeze(1)
        return hidden, pooled


def timestep_embedding(t, dim: int):
    """Sinusoidal embedding (cos first, as diffusers' flip_sin_to_cos=True)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb_dim: int | None, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_proj = nn.Linear(temb_dim, cout) if temb_dim else None
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_proj is not None:
            h = h + self.time_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class SpatialTransformer(nn.Module):
    def __init__(self, ch: int, context_dim: int, heads: int, groups: int, self_attention: bool = True):
        super().__init__()
        self.norm = nn.GroupNorm(groups, ch)
        self.proj_in = nn.Conv2d(ch, ch, 1)
        # Self-attention over a 16x16 map is most of the cost on a CPU; the full-resolution
        # blocks of tiny-sd use cross-attention only.
        self.ln1, self.attn1 = (nn.LayerNorm(ch), Attention(ch, heads)) if self_attention else (None, None)
        self.ln2, self.attn2 = nn.LayerNorm(ch), Attention(ch, heads, context_dim)
        self.ln3 = nn.LayerNorm(ch)
        self.ff = nn.Sequential(nn.Linear(ch, 4 * ch), nn.GELU(), nn.Linear(4 * ch, ch))
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x, context):
        b, c, h, w = x.shape
        y = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
        if self.attn1 is not None:
            y = y + self.attn1(self.ln1(y))
        y = y + self.attn2(self.ln2(y), context)
        y = y + self.ff(self.ln3(y))
        y = y.transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(y)


class UNet(nn.Module):
    """Two resolutions (latent, latent/2), a ResNet block plus a transformer block at each,
    skip connections between the down and up paths, timestep and text conditioning."""

    def __init__(self, channels: tuple[int, int], context_dim: int, heads: int, groups: int):
        super().__init__()
        c0, c1 = channels
        temb = c0 * 4
        self.c0 = c0
        self.time_mlp = nn.Sequential(nn.Linear(c0, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(4, c0, 3, padding=1)
        self.down0_res = ResBlock(c0, c0, temb, groups)
        self.down0_attn = SpatialTransformer(c0, context_dim, heads, groups, self_attention=True)
        self.downsample = nn.Conv2d(c0, c0, 3, stride=2, padding=1)
        self.down1_res = ResBlock(c0, c1, temb, groups)
        self.down1_attn = SpatialTransformer(c1, context_dim, heads, groups)
        self.mid_res1 = ResBlock(c1, c1, temb, groups)
        self.mid_attn = SpatialTransformer(c1, context_dim, heads, groups)
        self.mid_res2 = ResBlock(c1, c1, temb, groups)
        self.up1_res = ResBlock(c1 + c1, c1, temb, groups)
        self.up1_attn = SpatialTransformer(c1, context_dim, heads, groups)
        self.upsample = nn.Conv2d(c1, c1, 3, padding=1)
        self.up0_res = ResBlock(c1 + c0, c0, temb, groups)
        self.up0_attn = SpatialTransformer(c0, context_dim, heads, groups, self_attention=True)
        self.norm_out = nn.GroupNorm(groups, c0)
        self.conv_out = nn.Conv2d(c0, 4, 3, padding=1)

    def forward(self, sample, timestep, encoder_hidden_states):
        temb = self.time_mlp(timestep_embedding(timestep, self.c0))
        ctx = encoder_hidden_states
        h0 = self.conv_in(sample)
        h0 = self.down0_attn(self.down0_res(h0, temb), ctx)
        h1 = self.downsample(h0)
        h1 = self.down1_attn(self.down1_res(h1, temb), ctx)
        m = self.mid_res2(self.mid_attn(self.mid_res1(h1, temb), ctx), temb)
        u1 = self.up1_attn(self.up1_res(torch.cat([m, h1], 1), temb), ctx)
        u0 = self.upsample(F.interpolate(u1, scale_factor=2.0, mode="nearest"))
        u0 = self.up0_attn(self.up0_res(torch.cat([u0, h0], 1), temb), ctx)
        return self.conv_out(F.silu(self.norm_out(u0)))


class VaeEncoder(nn.Module):
    def __init__(self, channels: tuple[int, ...], groups: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 3, padding=1)]
        for i, c in enumerate(channels):
            cin = channels[max(i - 1, 0)]
            layers.append(ResBlock(cin, c, None, groups))
            if i < len(channels) - 1:
                layers.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.body = nn.ModuleList(layers)
        self.norm_out = nn.GroupNorm(groups, channels[-1])
        self.conv_out = nn.Conv2d(channels[-1], 8, 3, padding=1)

    def forward(self, x):
        for layer in self.body:
            x = layer(x)
        moments = self.conv_out(F.silu(self.norm_out(x)))
        return moments[:, :4], moments[:, 4:].clamp(-30, 20)


class VaeDecoder(nn.Module):
    def __init__(self, channels: tuple[int, ...], groups: int):
        super().__init__()
        rev = list(reversed(channels))
        self.conv_in = nn.Conv2d(4, rev[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i, c in enumerate(rev):
            self.blocks.append(ResBlock(rev[max(i - 1, 0)], c, None, groups))
            if i < len(rev) - 1:
                self.ups.append(nn.ConvTranspose2d(c, c, 4, stride=2, padding=1))
        self.norm_out = nn.GroupNorm(groups, rev[-1])
        self.conv_out = nn.Conv2d(rev[-1], 3, 3, padding=1)

    def forward(self, z):
        x = self.conv_in(z)
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i < len(self.ups):
                x = self.ups[i](x)
        return self.conv_out(F.silu(self.norm_out(x)))


# Export wrappers: the tensor names and outputs of optimum's ONNX exports.
class VaeEncoderExport(nn.Module):
    def __init__(self, enc: VaeEncoder):
        super().__init__()
        self.enc = enc

    def forward(self, sample):
        mean, _ = self.enc(sample)
        return mean


class TextEncoderExport(nn.Module):
    def __init__(self, te: TextEncoder):
        super().__init__()
        self.te = te

    def forward(self, input_ids):
        return self.te(input_ids)
