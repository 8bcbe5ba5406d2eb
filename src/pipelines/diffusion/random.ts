// The seeded Gaussian generator behind initial latents and ancestral noise. It reproduces
// PyTorch's CPU generator: `torch.randn(n, generator=torch.Generator().manual_seed(seed))`,
// MT19937 seeded with the low 32 bits of the seed. For n >= 16: 24-bit uniforms and Box–Muller
// over blocks of 16 (the last block recomputed over the final 16 values when n is not a multiple
// of 16). For n < 16 (an 8×8 image's 4 latent values) torch draws one value at a time: a double
// Box–Muller from two 53-bit uniforms, whose second value the generator keeps for its next such
// draw. So a seed gives the same latents here, on any machine, as in a diffusers pipeline run on
// CPU with that seed.
import type { NoiseSource } from './schedulers/index.js';

const N = 624;
const M = 397;

export class TorchGenerator implements NoiseSource {
  readonly #state = new Uint32Array(N);
  #index = N;
  /** The second value of the last one-at-a-time Box–Muller draw, kept for the next (torch's next_double_normal_sample). */
  #nextNormal: number | undefined;

  constructor(seed: number | bigint) {
    const s = this.#state;
    s[0] = Number(BigInt.asUintN(32, BigInt(seed)));
    for (let i = 1; i < N; i += 1) {
      const prev = s[i - 1] ?? 0;
      const x = prev ^ (prev >>> 30);
      // 1812433253 * x + i, in uint32 arithmetic (split to stay exact in float64).
      s[i] = (((((x & 0xffff0000) >>> 16) * 1812433253) << 16) + (x & 0x0000ffff) * 1812433253 + i) >>> 0;
    }
  }

  /** The next 32-bit output of MT19937. */
  nextUint32(): number {
    const s = this.#state;
    if (this.#index >= N) {
      for (let i = 0; i < N; i += 1) {
        const y = ((s[i] ?? 0) & 0x80000000) | ((s[(i + 1) % N] ?? 0) & 0x7fffffff);
        s[i] = (s[(i + M) % N] ?? 0) ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      this.#index = 0;
    }
    let y = s[this.#index] ?? 0;
    this.#index += 1;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** A float32 uniform in [0, 1) from the low 24 bits, as torch draws for float tensors. */
  #uniform(): number {
    return (this.nextUint32() & 0xffffff) / 0x1000000;
  }

  /** A double uniform in [0, 1) from 53 bits of two outputs, as torch's uniform_real_distribution<double>. */
  #uniform53(): number {
    const high = this.nextUint32();
    const low = this.nextUint32();
    return ((high & 0x1fffff) * 0x100000000 + low) / 2 ** 53;
  }

  /** One standard normal value, as torch's at::normal_distribution<double>. */
  #normal(): number {
    if (this.#nextNormal !== undefined) {
      const kept = this.#nextNormal;
      this.#nextNormal = undefined;
      return kept;
    }
    const u1 = this.#uniform53();
    const u2 = this.#uniform53();
    const radius = Math.sqrt(-2 * Math.log1p(-u2));
    const theta = 2 * Math.PI * u1;
    this.#nextNormal = radius * Math.sin(theta);
    return radius * Math.cos(theta);
  }

  standardNormal(count: number): Float32Array {
    if (count < 16) return Float32Array.from({ length: count }, () => this.#normal());
    const size = count;
    const out = new Float32Array(size);
    for (let i = 0; i < size; i += 1) out[i] = this.#uniform();
    for (let i = 0; i + 16 <= size; i += 16) boxMuller16(out, i);
    if (size % 16 !== 0) {
      const start = size - 16;
      for (let i = start; i < size; i += 1) out[i] = this.#uniform();
      boxMuller16(out, start);
    }
    return out;
  }
}

function boxMuller16(data: Float32Array, at: number): void {
  for (let j = at; j < at + 8; j += 1) {
    const u1 = 1 - (data[j] ?? 0);
    const u2 = data[j + 8] ?? 0;
    const radius = Math.sqrt(-2 * Math.log(u1));
    const theta = 2 * Math.PI * u2;
    data[j] = radius * Math.cos(theta);
    data[j + 8] = radius * Math.sin(theta);
  }
}
