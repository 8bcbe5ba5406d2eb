"""The training step both diffusion builders share (tiny_sd.py, tiny_sdxl.py): noising a batch of
clean latents at random timesteps, and one optimiser step with clipping and an EMA of the weights."""
import torch


def noised(x0: torch.Tensor, alphas_cumprod: torch.Tensor, steps: int, g: torch.Generator):
    """Timesteps, the noise, and x0 noised to them (DDPM's forward process); draws t, then the noise."""
    t = torch.randint(0, steps, (x0.shape[0],), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    a = alphas_cumprod[t][:, None, None, None]
    return t, noise, a.sqrt() * x0 + (1 - a).sqrt() * noise


def step(loss: torch.Tensor, opt, sched, params: list, pairs, step_index: int) -> None:
    """Backward, gradient clipping at 1, the optimiser and schedule, then each (ema, net) pair's EMA (warm-up to 0.999)."""
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    decay = min(0.999, (1 + step_index) / (10 + step_index))
    with torch.no_grad():
        for ema, cur in pairs:
            for pe, pc in zip(ema.parameters(), cur.parameters()):
                pe.mul_(decay).add_(pc, alpha=1 - decay)
